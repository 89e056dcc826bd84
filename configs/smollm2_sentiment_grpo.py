# configs/smollm2_sentiment_ppo.py's task with GRPO: 4 prompts x 4 responses per step, the same
# 16 responses, no critic.
#   python ppo.py configs/smollm2_sentiment_grpo.py
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALGORITHM = "grpo"
GROUP_SIZE = 4
ACTOR_MODEL = os.path.join(_ROOT, ".cache", "smollm2-135m-instruct")  # python -m tasks.smollm2
EVAL_DATASET = os.path.join(_ROOT, "data", "eval_prompts.jsonl")  # subjects never trained on
BATCH_SIZE = 4  # 4 prompts x 4 responses = 16 per step
MAX_STEPS = 12
SAMPLE_EVERY = 4
OUTPUT_DIR = "runs/smollm2-sentiment-grpo"
