#!/usr/bin/env bash
# Issue 15's GPU checks as one script for a lent GPU machine (no network there: packages the image lacks travel as
# wheels in .whl/, as for bench/gpu_check.sh). Qwen3-0.6B shapes with random weights (bench/speed.py --shapes), 128-token
# prompts and 512-token responses: the machine's limits, the sampler alone against the bandwidth bound (as it is and
# with COMPILE_DECODE), a PPO step's phases against the bf16 matmul peak, and ours beside TRL's PPOTrainer.
#   bash bench/gpu_speed.sh        # about 10 minutes on an H200; writes into $OUT
set -uo pipefail
OUT=${OUT:-/tmp/gpu_speed}
mkdir -p "$OUT"
source bench/gpu_env.sh  # the carried wheels and the environment
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
python3 -c "import torch, transformers, datasets, pyarrow, fsspec, trl; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__, 'trl', trl.__version__)"
S="--shapes=0.6B --prompt-len=128 --response-len=512"

echo "== 1. limits: matmul peak (float32, bfloat16) and copy bandwidth"
timeout 60 python3 bench/speed.py --limits

echo "== 2. the sampler alone, 64 x (128 + 512) tokens: default and COMPILE_DECODE (static cache, CUDA graphs)"
mkdir -p "$OUT/decode"
timeout 240 python3 bench/speed.py $S --decode --batch=64 --out="$OUT/decode" 2>&1 | grep -v Warning

echo "== 3. PPO steps, Qwen3-0.6B policy/reference/critic + DeBERTa-v3-large, 32 x (128 + 512), 4 epochs"
mkdir -p "$OUT/phases"
timeout 120 python3 bench/speed.py $S --batch=32 --steps=2 --warmup=1 --out="$OUT/phases" 2>&1 | tail -12

echo "== 4. ours and TRL 1.0.0's PPOTrainer, Qwen3-0.6B classifier as reward model and critic, 64-token responses"
timeout 240 python3 bench/speed.py ${S/--response-len=512/--response-len=64} --batch=32 --steps=0 --trl=python3 --trl-steps=3 --seeds=0 --out=/tmp/trl 2>&1 \
  | grep -v -E "Warning|warn" | tail -8
cp /tmp/trl/runs/bench-trl/trl_ppo_0.6B.md "$OUT/" 2>/dev/null
echo "== done"
