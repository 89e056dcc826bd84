"""Every setting of ppo.py, one UPPER_CASE constant each. Override any of them with a config file of such
constants (configs/*.py), then on the command line:
    python ppo.py configs/arithmetic_grpo.py --BATCH_SIZE=32 --DTYPE=bfloat16
Values are parsed as Python literals (32, 1e-5, None, True, "text"), anything else is taken as a string.
The defaults run the embedded task (tasks/sentiment.py) on a CPU in a few minutes.
"""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))

# ---- algorithm (settings left at None take the algorithm's published default, see ALGORITHMS in ppo.py) -----
ALGORITHM = "ppo"  # "ppo" (critic + GAE), "grpo" (group-normalised), "dr_grpo", "dapo" (clip-higher etc.), "reinforce"
GROUP_SIZE = 1  # responses sampled per prompt; grpo, dr_grpo and dapo need at least 2

# ---- models (local folders or hub ids, all loaded with from_pretrained) ------------------------------------
ACTOR_MODEL = os.path.join(_HERE, ".cache", "tiny-qwen3-sft")  # policy (causal LM); also the frozen reference
CRITIC_MODEL = ACTOR_MODEL  # value model backbone: a causal-LM or reward-model folder sharing the policy's tokenizer
REWARD_MODEL = "tasks.sentiment:sentiment_reward"  # classifier folder, module:function(prompts, ...), list
REWARD_LABEL = None  # a reward model with several outputs: the one whose logit is the reward, e.g. "POSITIVE"
REWARD_WEIGHTS = None  # with several REWARD_MODELs: the weight of each in the summed reward (None: 1 each)
CHAT_TEMPLATE = "auto"  # "auto": wrap prompts in the tokenizer's chat template if it has one; True; False
SYSTEM_PROMPT = None  # a system message put before each prompt that has none (needs a chat template)
ENABLE_THINKING = False  # Qwen3's thinking switch, passed to the chat template (False: an empty think block)

# ---- data ---------------------------------------------------------------------------------------------------
DATASET = os.path.join(_HERE, "data", "prompts.jsonl")  # .jsonl/.json/.csv/.parquet, save_to_disk folder, or hub id
DATASET_CONFIG = None  # the dataset's subset (config name) on the hub, e.g. "main" for openai/gsm8k
DATASET_SPLIT = "train"  # split to read from DATASET
PROMPT_KEY = "prompt"  # column holding the prompt: text, or a list of {"role", "content"} messages
MAX_PROMPT_LENGTH = 128  # prompts longer than this (in tokens) keep their last MAX_PROMPT_LENGTH tokens

# ---- output -------------------------------------------------------------------------------------------------
OUTPUT_DIR = "runs/ppo"  # metrics.jsonl, samples.jsonl, PNGs, policy/ and critic/ go here
SEED = 0  # seeds Python, NumPy and torch (data order, sampling, value-head init)

# ---- devices and precision ----------------------------------------------------------------------------------
DEVICE_POLICY = "auto"  # auto: cuda:0 when there is a GPU, else cpu
DEVICE_REF = "auto"  # auto: same device as the policy
DEVICE_CRITIC = "auto"  # auto: cuda:1 with two GPUs, else the policy's device
DEVICE_REWARD = "auto"  # auto: same device as the critic
SHARDING = "auto"  # torchrun: fsdp shards every model over the processes (FSDP2), none copies them; auto: fsdp for 2+
DTYPE = "auto"  # auto: bfloat16 on GPU, float32 on CPU; trained models keep float32 master weights either way

# ---- memory ------------------------------------------------------------------------------------------------
GRADIENT_CHECKPOINTING = False  # recompute activations in the backward pass (policy, critic): less memory, slower
LORA_RANK = 0  # 0: train every weight; >0: LoRA adapters of this rank (peft), the reference = adapters switched off
LORA_ALPHA = 32  # LoRA scale: the adapters' update is multiplied by LORA_ALPHA / LORA_RANK
LORA_TARGET_MODULES = "all-linear"  # peft target_modules: "all-linear" or a list of module names such as ["q_proj"]

# ---- rollout ------------------------------------------------------------------------------------------------
BATCH_SIZE = 32  # prompts per PPO step
MAX_NEW_TOKENS = 16  # response length limit; a response with no EOS by then is truncated
TEMPERATURE = 1.0  # sampling temperature; log-probs use the same temperature (top-k and top-p are off)
COMPILE_DECODE = False  # static KV cache + compiled decoding (CUDA graphs on GPU); samples not bitwise the default's
MISSING_EOS_PENALTY = None  # subtracted from the score of responses that hit MAX_NEW_TOKENS without EOS (None: off)
OVERLONG_BUFFER = None  # DAPO's soft length penalty over the last this-many tokens before MAX_NEW_TOKENS (None, 0: off)
OVERLONG_PENALTY = 1.0  # the soft length penalty at MAX_NEW_TOKENS (it grows linearly across the buffer)
DYNAMIC_SAMPLING = None  # drop groups whose rewards are all equal and sample more prompts (DAPO); True/False
MAX_SAMPLING_ROUNDS = 4  # dynamic sampling: extra generation rounds per step before training on a short batch
MAX_RESPONSES = None  # stop once this many responses have been generated, dropped ones included (None: no limit)

# ---- PPO ----------------------------------------------------------------------------------------------------
LEARNING_RATE = 3e-4  # policy AdamW learning rate (3e-6 is a typical start for Qwen3-0.6B)
CRITIC_LEARNING_RATE = None  # critic AdamW learning rate (None: LEARNING_RATE, as TRL's one optimizer)
LR_SCHEDULE = "linear"  # "linear": decay to 0 over the run (Huang et al. 2024, detail 10); "constant"
MINI_BATCH_SIZE = None  # sequences per optimizer step (None: ppo 8; grpo, dapo, reinforce the whole batch)
MICRO_BATCH_SIZE = 8  # sequences per forward/backward (gradient accumulation); MINI_BATCH_SIZE must divide by it
PPO_EPOCHS = None  # passes over each batch of rollouts (None: ppo 4; grpo, dapo 1; reinforce: always 1)
CLIP_RANGE = 0.2  # policy ratio clip epsilon (Schulman et al. 2017)
CLIP_RANGE_LOW = None  # lower clip epsilon: the ratio is kept above 1 - CLIP_RANGE_LOW (None: CLIP_RANGE)
CLIP_RANGE_HIGH = None  # upper clip epsilon: the ratio is kept below 1 + CLIP_RANGE_HIGH (None: CLIP_RANGE; dapo 0.28)
LOSS_AGG = None  # "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm" (None: its own)
VALUE_CLIP_RANGE = 0.2  # value prediction clip around the rollout values (None: unclipped value loss)
MAX_GRAD_NORM = 1.0  # the policy's gradient-norm clip (None: no clipping)
CRITIC_MAX_GRAD_NORM = None  # the critic's gradient-norm clip (None: no clipping, as TRL; bench/family.py)
ADAM_EPSILON = 1e-5  # AdamW epsilon, policy and critic (TRL: 1e-8)
WEIGHT_DECAY = 0.0  # AdamW weight decay on matrices (biases and norms exempt); TRL and OpenRLHF use 0
ENTROPY_COEF = 0.0  # entropy bonus weight in the policy loss
KL_COEF = None  # beta, the KL weight, in the reward (ppo, reinforce) or loss (grpo); None: 0.05, grpo 0.04, dapo 0
KL_ESTIMATOR = None  # "k1": log p - log q (unbiased); "k3": (q/p - 1) - log(q/p) (>= 0). None: k1, grpo k3
ALWAYS_LOAD_REFERENCE = False  # load the reference even when KL_COEF is 0, so that kl is still logged
KL_TARGET = None  # adaptive KL controller target, in nats per sequence (Ziegler et al. 2019); None: fixed KL_COEF
KL_HORIZON = 10000  # adaptive controller horizon, in sequences
GAMMA = 1.0  # discount
LAM = 0.95  # GAE lambda

# ---- schedule -----------------------------------------------------------------------------------------------
NUM_EPOCHS = 1  # passes over the prompt dataset, used when MAX_STEPS is None
MAX_STEPS = 100  # run length in PPO steps, reshuffling the prompts each pass (None: NUM_EPOCHS full passes)

# ---- checkpoints and faults ---------------------------------------------------------------------------------
SAVE_EVERY = 25  # write OUTPUT_DIR/checkpoint every this many steps (also at the end, on Ctrl-C/SIGTERM, on faults)
RESUME = False  # continue the run in OUTPUT_DIR from its checkpoint, with the same settings
OVERWRITE = False  # start a new run in an OUTPUT_DIR that already holds one, replacing its files
MAX_SKIPPED_IN_A_ROW = 3  # stop (after saving) once this many updates in a row met NaN/inf rewards or gradients
DEBUG = False  # show the Python traceback when settings or inputs are refused

# ---- logging ------------------------------------------------------------------------------------------------
PLOT_EVERY = 25  # redraw the PNGs every this many steps (and at the end); each redraw takes ~2 s on a CPU
SAMPLE_EVERY = 20  # log samples to samples.jsonl and the console every this many steps (and at the first and last)
NUM_SAMPLES = 4  # (prompt, response, reward) rows per sample log
REPORT_TO = "none"  # also log to "tensorboard" (OUTPUT_DIR/tensorboard), "wandb" or "trackio"
RUN_NAME = None  # the run's name in the tracker (None: OUTPUT_DIR's last part)

# ---- evaluation on held-out prompts (also evaluate.py) ------------------------------------------------------
EVAL_DATASET = None  # held-out prompts (PROMPT_KEY, DATASET_CONFIG as DATASET's) scored at step 0 and at the end
EVAL_SPLIT = "test"  # split to read from EVAL_DATASET (hub ids and save_to_disk folders; files have one)
EVAL_EVERY = None  # also evaluate every this many steps (None: at step 0 and at the end only)
EVAL_MAX_PROMPTS = None  # evaluate on the first this-many prompts of EVAL_DATASET (None: all)
EVAL_SAMPLES = 8  # responses sampled per held-out prompt, with the same random numbers at every evaluation
