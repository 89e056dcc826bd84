# The seed's setup on one 24 GB GPU: LoRA adapters on policy and critic (the reference is the policy
# with its adapters off, so no second copy), bf16 frozen base weights, gradient checkpointing,
# smaller micro-batches. See the README's memory table (python bench/speed.py --memory).
#   python ppo.py configs/qwen3_0.6b_lora_24gb.py
ALGORITHM = "ppo"
ACTOR_MODEL = "Qwen/Qwen3-0.6B"
CRITIC_MODEL = "Qwen/Qwen3-0.6B"
REWARD_MODEL = "OpenAssistant/reward-model-deberta-v3-large-v2"
DATASET = "trl-lib/ultrafeedback-prompt"
EVAL_DATASET = "trl-lib/ultrafeedback-prompt"
EVAL_SPLIT = "test"
EVAL_MAX_PROMPTS = 64
EVAL_SAMPLES = 2
EVAL_EVERY = 50
DEVICE_POLICY = "cuda:0"  # everything on the one GPU
DEVICE_CRITIC = "cuda:0"
DTYPE = "bfloat16"
LORA_RANK = 16
LORA_ALPHA = 32
GRADIENT_CHECKPOINTING = True
MAX_PROMPT_LENGTH = 256
MAX_NEW_TOKENS = 256
BATCH_SIZE = 32
MINI_BATCH_SIZE = 8
MICRO_BATCH_SIZE = 2
LEARNING_RATE = 2e-5  # adapters take a larger rate than full fine-tuning
MISSING_EOS_PENALTY = 1.0
MAX_STEPS = 500
SAVE_EVERY = 50
OUTPUT_DIR = "runs/qwen3-0.6b-lora"
REPORT_TO = "tensorboard"
