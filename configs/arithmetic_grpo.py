# The embedded verifiable-reward task with GRPO: a tiny Qwen3 learns two-digit addition from an
# exact-match reward against the dataset's `answer` column (tasks/arithmetic.py; the policy is built
# on first use, ~40 s).
#   python ppo.py configs/arithmetic_grpo.py
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALGORITHM = "grpo"
GROUP_SIZE = 8
ACTOR_MODEL = os.path.join(_ROOT, ".cache", "tiny-qwen3-arith")  # built by arithmetic.build()
REWARD_MODEL = "tasks.rewards:exact_match"  # reads the `answer` column
DATASET = os.path.join(_ROOT, "data", "arithmetic_train.jsonl")
EVAL_DATASET = os.path.join(_ROOT, "data", "arithmetic_eval.jsonl")  # 200 held-out problems
EVAL_EVERY = 20
EVAL_SAMPLES = 4
BATCH_SIZE = 16  # 16 problems x 8 answers = 128 responses per step
MAX_NEW_TOKENS = 4  # a sum has at most 3 digits, then EOS
LEARNING_RATE = 1e-3
MAX_STEPS = 300
OUTPUT_DIR = "runs/arithmetic-grpo"
