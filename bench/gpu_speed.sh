#!/usr/bin/env bash
# The rollout and update against the GPU's limits, as one script for a lent GPU machine (no network there: packages
# the image lacks travel as wheels in .whl/, as for bench/gpu_check.sh). Qwen3-0.6B shapes with random weights
# (bench/speed.py --shapes), 128-token prompts and 512-token responses (random weights never end early): the
# machine's limits; the sampler alone against the bandwidth bound at batch 64 (the default sampler and COMPILE_DECODE
# on the bf16 rollout copy, and COMPILE_DECODE on the float32 master weights) and 256; a PPO step's phases against
# the bf16 matmul peak; and verl's published shape (256 prompts, 0.5B-class actor and critic, one GPU), samples/s.
#   bash bench/gpu_speed.sh        # under 10 minutes on an H200 (the timeouts sum to 570 s); writes into $OUT
set -uo pipefail
OUT=${OUT:-/tmp/gpu_speed}
mkdir -p "$OUT"
source bench/gpu_env.sh  # the carried wheels and the environment
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
python3 -c "import torch, transformers, datasets; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'datasets', datasets.__version__)"
S="--shapes=0.6B --prompt-len=128 --response-len=512"
FAST="--COMPILE_DECODE=True --MICRO_BATCH_TOKENS=10240"  # 16 rows of 640 tokens at most

echo "== 1. limits: matmul peak (float32, bfloat16) and copy bandwidth"
timeout 40 python3 bench/speed.py --limits

echo "== 2. the sampler alone, 64 x (128 + 512) tokens"
mkdir -p "$OUT/decode64" "$OUT/decode256"
timeout 180 python3 bench/speed.py $S --decode --batch=64 --out="$OUT/decode64" 2>&1 | grep -v Warning
echo "== 3. COMPILE_DECODE on the rollout copy, 256 x (128 + 512) tokens"
timeout 100 python3 bench/speed.py $S --decode --compiled-only --batch=256 --out="$OUT/decode256" 2>&1 \
  | grep -v Warning

echo "== 4. PPO steps, Qwen3-0.6B policy/reference/critic + DeBERTa-v3-large, 32 x (128 + 512), 4 epochs, $FAST"
mkdir -p "$OUT/phases" "$OUT/verl"
timeout 100 python3 bench/speed.py $S --batch=32 --steps=1 --warmup=1 --out="$OUT/phases" -- $FAST 2>&1 | tail -12

echo "== 5. verl's shape: 256 x (128 + 512), minibatches of 64, 4 epochs; samples/s = 256 / step_time (verl: 3.8)"
timeout 150 python3 bench/speed.py $S --batch=256 --steps=1 --warmup=1 --out="$OUT/verl" -- $FAST \
  --MINI_BATCH_SIZE=64 2>&1 | tail -12
python3 -c "import json; s = json.load(open('$OUT/verl/bench_shapes.json'))['0.6B']; \
print(f\"verl shape: step {s['step_time']['mean']:.1f} s, {256 / s['step_time']['mean']:.2f} samples/s (verl published 3.8)\")" \
  2>/dev/null
echo "== done"
