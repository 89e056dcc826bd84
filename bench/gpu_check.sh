#!/usr/bin/env bash
# The GPU checks behind the README's GPU numbers, as one script for a lent GPU machine (no network there: the
# packages the image lacks travel as wheels in .whl/, see README "Where the time goes"). Writes into $OUT.
#   bash bench/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
source bench/gpu_env.sh  # the carried wheels and the environment
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"

echo "== 1. the embedded default, bf16 autocast on one GPU: phases, tokens/s, peak memory"
python3 bench/speed.py --steps=10 --out="$OUT" -- --DTYPE=bfloat16 | tail -12
cp "$OUT/bench.json" "$OUT/bench_gpu.json"

echo "== 2. the two-device split, policy and reference on cuda:0, critic and reward on the CPU"
python3 bench/speed.py --steps=5 --out="$OUT" -- --DEVICE_CRITIC=cpu | tail -12

echo "== 3. python ppo.py, the whole default run, on the GPU"
python3 -c "import subprocess, sys, time; t = time.time(); r = subprocess.run(sys.argv[1:]); print(f'wall {time.time() - t:.1f} s, exit {r.returncode}')" \
  python3 ppo.py --OUTPUT_DIR=/tmp/gpu_run --PLOT_EVERY=1000 2>&1 | tail -3
python3 evaluate.py .cache/tiny-qwen3-sft /tmp/gpu_run/policy --DATASET=data/eval_prompts.jsonl | grep "gain"

echo "== 4. LoRA and gradient checkpointing on the GPU (the reference is the adapter-free base)"
python3 ppo.py --OUTPUT_DIR=/tmp/gpu_lora --LORA_RANK=8 --GRADIENT_CHECKPOINTING=True --MAX_STEPS=20 \
  --PLOT_EVERY=1000 2>&1 | tail -2

echo "== 5. memory: Qwen3-0.6B + DeBERTa-v3-large shapes, estimate and measured peak"
python3 bench/speed.py --memory | tee "$OUT/memory.md"


echo "== 6. memory with every model sharded by FSDP2 over one GPU (issue 14): | size, setup | GPUs | estimate | measured peak |"
python3 -m torch.distributed.run --standalone --nproc_per_node=1 bench/speed.py --memory --sharded --sizes=0.6B \
  | tee "$OUT/memory_fsdp.md"

echo "== 7. the default run sharded over one GPU (torchrun, SHARDING=fsdp): trains, saves, same held-out gain"
python3 -m torch.distributed.run --standalone --nproc_per_node=1 ppo.py --SHARDING=fsdp --OUTPUT_DIR=/tmp/gpu_fsdp \
  --PLOT_EVERY=1000 2>&1 | grep -E "parameters held|done in|error" | tail -3
python3 evaluate.py .cache/tiny-qwen3-sft /tmp/gpu_fsdp/policy --DATASET=data/eval_prompts.jsonl | grep "gain"
