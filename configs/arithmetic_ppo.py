# The embedded verifiable-reward task with PPO: the same problems, reward and held-out evaluation as
# configs/arithmetic_grpo.py, one answer per problem and a critic (initialised from the policy) for
# the baseline.
#   python ppo.py configs/arithmetic_ppo.py
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALGORITHM = "ppo"
ACTOR_MODEL = os.path.join(_ROOT, ".cache", "tiny-qwen3-arith")  # built by arithmetic.build()
CRITIC_MODEL = ACTOR_MODEL
REWARD_MODEL = "tasks.rewards:exact_match"  # reads the `answer` column
DATASET = os.path.join(_ROOT, "data", "arithmetic_train.jsonl")
EVAL_DATASET = os.path.join(_ROOT, "data", "arithmetic_eval.jsonl")  # 200 held-out problems
EVAL_EVERY = 20
EVAL_SAMPLES = 4
# 128 problems, one answer each: the responses per step of configs/arithmetic_grpo.py
BATCH_SIZE = 128
MINI_BATCH_SIZE = 32
MICRO_BATCH_SIZE = 32
MAX_NEW_TOKENS = 4
LEARNING_RATE = 5e-4
MAX_STEPS = 300
OUTPUT_DIR = "runs/arithmetic-ppo"
