# The seed's setup: Qwen3-0.6B as policy and critic, the OpenAssistant DeBERTa-v3-large reward
# model, chat prompts from UltraFeedback (TRL's conversational prompt-only format), held-out prompts
# scored every 50 steps. On two GPUs the policy and reference sit on cuda:0, the critic and reward
# model on cuda:1 (DEVICE_* = "auto"). Needs the hub once (then HF_HUB_OFFLINE=1 works from the
# cache):
#   python ppo.py configs/qwen3_0.6b_deberta.py
ALGORITHM = "ppo"
ACTOR_MODEL = "Qwen/Qwen3-0.6B"
CRITIC_MODEL = "Qwen/Qwen3-0.6B"
# a text pair (question, answer) encoder
REWARD_MODEL = "OpenAssistant/reward-model-deberta-v3-large-v2"
# 37,775 train / 1,989 test conversations in the "prompt" column
DATASET = "trl-lib/ultrafeedback-prompt"
DATASET_SPLIT = "train"
EVAL_DATASET = "trl-lib/ultrafeedback-prompt"
EVAL_SPLIT = "test"
EVAL_MAX_PROMPTS = 128
EVAL_SAMPLES = 2
EVAL_EVERY = 50
# Qwen3 answers directly (an empty think block), as the reward model expects
ENABLE_THINKING = False
MAX_PROMPT_LENGTH = 256
MAX_NEW_TOKENS = 256
BATCH_SIZE = 64
MINI_BATCH_SIZE = 16
MICRO_BATCH_SIZE = 4
LEARNING_RATE = 3e-6  # a typical start for Qwen3-0.6B
MISSING_EOS_PENALTY = 1.0  # responses cut at MAX_NEW_TOKENS score lower (N+ detail 23)
DTYPE = "bfloat16"
MAX_STEPS = 500
SAVE_EVERY = 50
OUTPUT_DIR = "runs/qwen3-0.6b-deberta"
REPORT_TO = "tensorboard"
