# GRPO on grade-school math with a verifiable reward: Qwen3-0.6B answers GSM8K questions, scored 1
# when the last number of its answer equals the dataset's (rewards.gsm8k_answer reads the `answer`
# column, "... #### 42"). Held-out accuracy on the first 200 test problems every 25 steps. Needs the
# hub once:
#   python ppo.py configs/gsm8k_grpo.py
ALGORITHM = "grpo"
GROUP_SIZE = 8
ACTOR_MODEL = "Qwen/Qwen3-0.6B"
REWARD_MODEL = "tasks.rewards:gsm8k_answer"
DATASET = "openai/gsm8k"
DATASET_CONFIG = "main"  # gsm8k's subsets: "main" and "socratic"
DATASET_SPLIT = "train"
PROMPT_KEY = "question"
SYSTEM_PROMPT = ("Solve the problem step by step. End with the final answer as a number on its own "
                 "line.")
ENABLE_THINKING = False
EVAL_DATASET = "openai/gsm8k"
EVAL_SPLIT = "test"
EVAL_MAX_PROMPTS = 200
EVAL_SAMPLES = 1
EVAL_EVERY = 25
MAX_PROMPT_LENGTH = 256
MAX_NEW_TOKENS = 384
MISSING_EOS_PENALTY = 0.5  # an answer cut off before it ends loses half a point
BATCH_SIZE = 16  # 16 questions x 8 answers = 128 responses per step
MICRO_BATCH_SIZE = 4
LEARNING_RATE = 1e-6
DTYPE = "bfloat16"
MAX_STEPS = 400
SAVE_EVERY = 25
OUTPUT_DIR = "runs/gsm8k-grpo"
REPORT_TO = "tensorboard"
