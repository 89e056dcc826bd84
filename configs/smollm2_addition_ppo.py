# configs/smollm2_addition_grpo.py's task with PPO: one answer per problem, and a critic initialised
# from the same pretrained model (its value head new), as many responses per step as GRPO's.
#   python ppo.py configs/smollm2_addition_ppo.py
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALGORITHM = "ppo"
ACTOR_MODEL = os.path.join(_ROOT, ".cache", "smollm2-135m-instruct")  # python -m tasks.smollm2
CRITIC_MODEL = ACTOR_MODEL
REWARD_MODEL = "tasks.rewards:gsm8k_answer"  # the response's last number against `answer`
DATASET = os.path.join(_ROOT, "data", "addition_chat_train.jsonl")
EVAL_DATASET = os.path.join(_ROOT, "data", "addition_chat_eval.jsonl")  # 200 held-out problems
EVAL_SAMPLES = 2
BATCH_SIZE = 32  # 32 problems, one answer each: the responses per step of the GRPO config
MAX_NEW_TOKENS = 12
MAX_STEPS = 12
SAMPLE_EVERY = 4
OUTPUT_DIR = "runs/smollm2-addition-ppo"
