"""Every setting of ppo.py, one UPPER_CASE constant each. Override any of them on the command line:
    python ppo.py --BATCH_SIZE=32 --REWARD_MODEL=path/to/reward-model --DTYPE=bfloat16
Values are parsed as Python literals (32, 1e-5, None, True, "text"), anything else is taken as a string.
The defaults run the embedded task (default_task.py) on a CPU in a few minutes.
"""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))

# ---- models (local folders or hub ids, all loaded with from_pretrained) ------------------------------------
ACTOR_MODEL = os.path.join(_HERE, ".cache", "tiny-qwen3-sft")  # policy (causal LM); also the frozen reference
CRITIC_MODEL = ACTOR_MODEL  # value model backbone: a causal-LM or reward-model folder sharing the policy's tokenizer
REWARD_MODEL = "default_task:sentiment_reward"  # a sequence-classifier folder, or module:function(prompts, responses)
CHAT_TEMPLATE = "auto"  # "auto": wrap prompts in the tokenizer's chat template if it has one; True; False

# ---- data ---------------------------------------------------------------------------------------------------
DATASET = os.path.join(_HERE, "data", "prompts.jsonl")  # .jsonl/.json/.csv/.parquet file, save_to_disk folder, or hub id
DATASET_SPLIT = "train"  # split to read from DATASET
PROMPT_KEY = "prompt"  # column holding the prompt text
MAX_PROMPT_LENGTH = 128  # prompts longer than this (in tokens) keep their last MAX_PROMPT_LENGTH tokens

# ---- output -------------------------------------------------------------------------------------------------
OUTPUT_DIR = "runs/ppo"  # metrics.jsonl, samples.jsonl, PNGs, policy/ and critic/ go here
SEED = 0  # seeds Python, NumPy and torch (data order, sampling, value-head init)

# ---- devices and precision ----------------------------------------------------------------------------------
DEVICE_POLICY = "auto"  # auto: cuda:0 when there is a GPU, else cpu
DEVICE_REF = "auto"  # auto: same device as the policy
DEVICE_CRITIC = "auto"  # auto: cuda:1 with two GPUs, else the policy's device
DEVICE_REWARD = "auto"  # auto: same device as the critic
DTYPE = "auto"  # auto: bfloat16 on GPU, float32 on CPU; trained models keep float32 master weights either way

# ---- rollout ------------------------------------------------------------------------------------------------
BATCH_SIZE = 32  # prompts per PPO step
MAX_NEW_TOKENS = 16  # response length limit; a response with no EOS by then is truncated
TEMPERATURE = 1.0  # sampling temperature; log-probs use the same temperature (top-k and top-p are off)
MISSING_EOS_PENALTY = None  # subtracted from the score of responses that hit MAX_NEW_TOKENS without EOS (None: off)

# ---- PPO ----------------------------------------------------------------------------------------------------
LEARNING_RATE = 3e-4  # policy AdamW learning rate (3e-6 is a typical start for Qwen3-0.6B)
CRITIC_LEARNING_RATE = 1e-3  # critic AdamW learning rate (None: LEARNING_RATE)
LR_SCHEDULE = "linear"  # "linear": decay to 0 over the run (Huang et al. 2024, detail 10); "constant"
MINI_BATCH_SIZE = 8  # sequences per optimizer step; BATCH_SIZE must divide by it
MICRO_BATCH_SIZE = 8  # sequences per forward/backward (gradient accumulation); MINI_BATCH_SIZE must divide by it
PPO_EPOCHS = 4  # passes over each batch of rollouts
CLIP_RANGE = 0.2  # policy ratio clip epsilon (Schulman et al. 2017)
VALUE_CLIP_RANGE = 0.2  # value prediction clip around the rollout values (None: unclipped value loss)
MAX_GRAD_NORM = 1.0  # gradient-norm clip, for policy and critic separately
ENTROPY_COEF = 0.0  # entropy bonus weight in the policy loss
KL_COEF = 0.05  # beta, weight of the per-token KL penalty in the reward (initial value when adaptive)
KL_ESTIMATOR = "k1"  # "k1": log p - log q (unbiased); "k3": (q/p - 1) - log(q/p) (>= 0, lower variance)
KL_TARGET = None  # adaptive KL controller target, in nats per sequence (Ziegler et al. 2019); None: fixed KL_COEF
KL_HORIZON = 10000  # adaptive controller horizon, in sequences
GAMMA = 1.0  # discount
LAM = 0.95  # GAE lambda

# ---- schedule -----------------------------------------------------------------------------------------------
NUM_EPOCHS = 1  # passes over the prompt dataset, used when MAX_STEPS is None
MAX_STEPS = 100  # run length in PPO steps, reshuffling the prompts each pass (None: NUM_EPOCHS full passes)

# ---- logging ------------------------------------------------------------------------------------------------
PLOT_EVERY = 25  # redraw the PNGs every this many steps (and at the end); each redraw takes ~2 s on a CPU
SAMPLE_EVERY = 20  # log samples to samples.jsonl and the console every this many steps (and at the first and last)
NUM_SAMPLES = 4  # (prompt, response, reward) rows per sample log
EVAL_SAMPLES = 8  # evaluate.py: responses sampled per prompt
