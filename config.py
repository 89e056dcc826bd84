"""Every setting of ppo.py, one UPPER_CASE constant each. Override any of them with a config file of
such constants (configs/*.py), then on the command line:
    python ppo.py configs/arithmetic_grpo.py --BATCH_SIZE=32 --DTYPE=bfloat16
Values are parsed as Python literals (32, 1e-5, None, True, "text"), anything else is taken as a
string. The defaults run the embedded task (tasks/sentiment.py) on a CPU in a few minutes.

Each setting is declared here once: its annotation says what it accepts ("int >= 1", "float in
[0, 1]", "one of 'a', 'b'", "... or None"; machinery/settings.py checks every value against it
before anything loads), its value is the default, its comment (beside it or just above) what it
does; `python ppo.py --help` shows all three.
"""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))

# ---- algorithm (a setting left at None takes the algorithm's own default: ALGORITHMS in ppo.py) --
# "ppo" (critic + GAE), "grpo" (group-normalised), "dr_grpo", "dapo" (clip-higher etc.),
# "reinforce", "gspo" (a clip on each sequence's ratio), "cispo" (a clipped weight on log pi)
ALGORITHM: "one of ALGORITHMS" = "ppo"
GROUP_SIZE: "int >= 1" = 1  # responses sampled per prompt; grpo, dr_grpo and dapo need at least 2

# ---- models (local folders or hub ids, all loaded with from_pretrained) --------------------------
# policy (causal LM); also the frozen reference
ACTOR_MODEL: "text" = os.path.join(_HERE, ".cache", "tiny-qwen3-sft")
# value model backbone: a causal-LM or reward-model folder sharing the policy's tokenizer
CRITIC_MODEL: "text" = ACTOR_MODEL
# classifier folder, module:function(prompts, ...), list
REWARD_MODEL: "names" = "tasks.sentiment:sentiment_reward"
# a reward model with several outputs: the one whose logit is the reward, e.g. "POSITIVE"
REWARD_LABEL: "label or None" = None
# with several REWARD_MODELs: the weight of each in the summed reward (None: 1 each)
REWARD_WEIGHTS: "numbers or None" = None
# "auto": wrap prompts in the tokenizer's chat template if it has one; True; False
CHAT_TEMPLATE: "one of 'auto', True, False" = "auto"
# a system message put before each prompt that has none (needs a chat template)
SYSTEM_PROMPT: "text or None" = None
# Qwen3's thinking switch, passed to the chat template (False: an empty think block)
ENABLE_THINKING: "bool" = False

# ---- data ----------------------------------------------------------------------------------------
# .jsonl/.json/.csv/.parquet, save_to_disk folder, or hub id
DATASET: "text" = os.path.join(_HERE, "data", "prompts.jsonl")
# the dataset's subset (config name) on the hub, e.g. "main" for openai/gsm8k
DATASET_CONFIG: "text or None" = None
DATASET_SPLIT: "text" = "train"  # split to read from DATASET
# column holding the prompt: text, or a list of {"role", "content"} messages
PROMPT_KEY: "text" = "prompt"
# prompts longer than this (in tokens) keep their last MAX_PROMPT_LENGTH tokens
MAX_PROMPT_LENGTH: "int >= 1" = 128

# ---- output --------------------------------------------------------------------------------------
OUTPUT_DIR: "text" = "runs/ppo"  # metrics.jsonl, samples.jsonl, PNGs, policy/ and critic/ go here
# seeds Python, NumPy and torch (data order, sampling, value-head init)
SEED: "int in [0, 4294967295]" = 0

# ---- devices and precision -----------------------------------------------------------------------
DEVICE_POLICY: "text" = "auto"  # auto: cuda:0 when there is a GPU, else cpu
DEVICE_REF: "text" = "auto"  # auto: same device as the policy
DEVICE_CRITIC: "text" = "auto"  # auto: cuda:1 with two GPUs, else the policy's device
DEVICE_REWARD: "text" = "auto"  # auto: same device as the critic
# torchrun: fsdp shards every model over the processes (FSDP2), none copies them; auto: fsdp for 2+
SHARDING: "one of 'auto', 'none', 'fsdp'" = "auto"
# auto: bfloat16 on GPU, float32 on CPU; trained models keep float32 master weights either way
DTYPE: "one of 'auto', 'float32', 'bfloat16', 'float16'" = "auto"

# ---- memory --------------------------------------------------------------------------------------
# recompute activations in the backward pass (policy, critic): less memory, slower
GRADIENT_CHECKPOINTING: "bool" = False
# 0: train every weight; >0: LoRA adapters of this rank (peft), the reference = adapters switched
# off
LORA_RANK: "int >= 0" = 0
# LoRA scale: the adapters' update is multiplied by LORA_ALPHA / LORA_RANK
LORA_ALPHA: "float > 0" = 32
# peft target_modules: "all-linear" or a list of module names such as ["q_proj"]
LORA_TARGET_MODULES: "modules" = "all-linear"

# ---- rollout -------------------------------------------------------------------------------------
BATCH_SIZE: "int >= 1" = 32  # prompts per PPO step
# response length limit; a response with no EOS by then is truncated
MAX_NEW_TOKENS: "int >= 1" = 16
# sampling temperature; log-probs use the same temperature (top-k and top-p are off)
TEMPERATURE: "float > 0" = 1.0
# static KV cache + compiled decoding (CUDA graphs on GPU); samples not bitwise the default's
COMPILE_DECODE: "bool" = False
# sample from a DTYPE copy of the policy refreshed after each update; auto: when DTYPE is 16-bit,
# unsharded, without LoRA (a decoding step reads 2 bytes per weight, not 4 and autocast's casts)
ROLLOUT_COPY: "one of 'auto', True, False" = "auto"
# a rollout copy's samples weighted by pi_train / pi_rollout, per sequence or token, dropped
# ("mask", TRL's default at the sequence level) or capped ("cap") above ROLLOUT_CORRECTION_CAP
ROLLOUT_CORRECTION: "one of 'seq-mask', 'seq-cap', 'token-mask', 'token-cap', 'off'" = "seq-mask"
ROLLOUT_CORRECTION_CAP: "float >= 1" = 3.0  # the importance weight's cap C (TRL: 3)
# subtracted from the score of responses that hit MAX_NEW_TOKENS without EOS (None: off)
MISSING_EOS_PENALTY: "float or None" = None
# DAPO's soft length penalty over the last this-many tokens before MAX_NEW_TOKENS (None, 0: off)
OVERLONG_BUFFER: "int >= 0 or None" = None
# the soft length penalty at MAX_NEW_TOKENS (it grows linearly across the buffer)
OVERLONG_PENALTY: "float >= 0" = 1.0
# drop groups whose rewards are all equal and sample more prompts (DAPO); True/False
DYNAMIC_SAMPLING: "bool or None" = None
# dynamic sampling: extra generation rounds per step before training on a short batch
MAX_SAMPLING_ROUNDS: "int >= 0" = 4
# stop once this many responses have been generated, dropped ones included (None: no limit)
MAX_RESPONSES: "int >= 1 or None" = None

# ---- PPO -----------------------------------------------------------------------------------------
# policy AdamW learning rate. None: by the policy's size, 3e-4 under 10M parameters (the embedded
# tiny models), else 3e-6, or 1e-5 where each batch feeds one optimizer step (grpo, dapo,
# reinforce): 3e-4 moves a pretrained model by a KL of 11 nats in one step
LEARNING_RATE: "float >= 0 or None" = None
# critic AdamW learning rate (None: LEARNING_RATE, as TRL's one optimizer)
CRITIC_LEARNING_RATE: "float >= 0 or None" = None
# "linear": decay to 0 over the run (Huang et al. 2024, detail 10); "constant"
LR_SCHEDULE: "one of 'linear', 'constant'" = "linear"
# sequences per optimizer step (None: ppo 8; grpo, dapo, reinforce the whole batch; gspo, cispo a
# quarter of it)
MINI_BATCH_SIZE: "int >= 1 or None" = None
# sequences per forward/backward (gradient accumulation); MINI_BATCH_SIZE must divide by it
MICRO_BATCH_SIZE: "int >= 1" = 8
# instead: micro-batches packed by length up to this many tokens (rows x (prompt + longest reply))
MICRO_BATCH_TOKENS: "int >= 1 or None" = None
# response positions whose logits exist at once: the output layer runs in chunks, recomputed in
# the backward (152k-token vocabularies: 0.6 GB per 1024 in float32); None: all at once
LOGPROB_CHUNK: "int >= 1 or None" = 1024
# passes over each batch of rollouts (None: ppo 4; grpo, dapo 1; reinforce: always 1)
PPO_EPOCHS: "int >= 1 or None" = None
CLIP_RANGE: "float > 0" = 0.2  # policy ratio clip epsilon (Schulman et al. 2017)
# lower clip epsilon: the ratio is kept above 1 - CLIP_RANGE_LOW (None: CLIP_RANGE; gspo 3e-4,
# cispo 1: no lower bound)
CLIP_RANGE_LOW: "float in (0, 1] or None" = None
# upper clip epsilon: the ratio is kept below 1 + CLIP_RANGE_HIGH (None: CLIP_RANGE; dapo and
# cispo 0.28, gspo 4e-4)
CLIP_RANGE_HIGH: "float > 0 or None" = None
# "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm" (None: its
# own)
LOSS_AGG: "one of LOSS_AGGREGATIONS or None" = None
# value prediction clip around the rollout values (None: unclipped value loss)
VALUE_CLIP_RANGE: "float > 0 or None" = 0.2
MAX_GRAD_NORM: "float > 0 or None" = 1.0  # the policy's gradient-norm clip (None: no clipping)
# the critic's gradient-norm clip (None: no clipping, as TRL; bench/family.py)
CRITIC_MAX_GRAD_NORM: "float > 0 or None" = None
ADAM_EPSILON: "float > 0" = 1e-5  # AdamW epsilon, policy and critic (TRL: 1e-8)
# AdamW weight decay on matrices (biases and norms exempt); TRL and OpenRLHF use 0
WEIGHT_DECAY: "float >= 0" = 0.0
ENTROPY_COEF: "float" = 0.0  # entropy bonus weight in the policy loss
# beta, the KL weight, in the reward (ppo, reinforce) or loss (grpo); None: 0.05, grpo 0.04, dapo,
# gspo and cispo 0
KL_COEF: "float >= 0 or None" = None
# "k1": log p - log q (unbiased); "k3": (q/p - 1) - log(q/p) (>= 0). None: k1, grpo k3
KL_ESTIMATOR: "one of 'k1', 'k3' or None" = None
# load the reference even when KL_COEF is 0, so that kl is still logged
ALWAYS_LOAD_REFERENCE: "bool" = False
# adaptive KL controller target, in nats per sequence (Ziegler et al. 2019); None: fixed KL_COEF
KL_TARGET: "float > 0 or None" = None
KL_HORIZON: "int >= 1" = 10000  # adaptive controller horizon, in sequences
GAMMA: "float in [0, 1]" = 1.0  # discount
LAM: "float in [0, 1]" = 0.95  # GAE lambda

# ---- schedule ------------------------------------------------------------------------------------
NUM_EPOCHS: "int >= 1" = 1  # passes over the prompt dataset, used when MAX_STEPS is None
# run length in PPO steps, reshuffling the prompts each pass (None: NUM_EPOCHS full passes)
MAX_STEPS: "int >= 1 or None" = 100

# ---- checkpoints and faults ----------------------------------------------------------------------
# write OUTPUT_DIR/checkpoint every this many steps (also at the end, on Ctrl-C/SIGTERM, on faults)
SAVE_EVERY: "int >= 1" = 25
RESUME: "bool" = False  # continue the run in OUTPUT_DIR from its checkpoint, with the same settings
# start a new run in an OUTPUT_DIR that already holds one, replacing its files
OVERWRITE: "bool" = False
# stop (after saving) once this many updates in a row met NaN/inf rewards or gradients
MAX_SKIPPED_IN_A_ROW: "int >= 1" = 3
DEBUG: "bool" = False  # show the Python traceback when settings or inputs are refused
# health alarms (README, "Health alarms"): "warn" prints each once; "stop" also saves and exits 3
HEALTH: "one of 'warn', 'stop', 'off'" = "warn"

# ---- logging -------------------------------------------------------------------------------------
# redraw the PNGs every this many steps (and at the end); each redraw takes ~2 s on a CPU
PLOT_EVERY: "int >= 1" = 25
# log samples to samples.jsonl and the console every this many steps (and at the first and last)
SAMPLE_EVERY: "int >= 1" = 20
NUM_SAMPLES: "int >= 0" = 4  # (prompt, response, reward) rows per sample log
# also log to "tensorboard" (OUTPUT_DIR/tensorboard), "wandb" or "trackio"
REPORT_TO: "one of TRACKERS" = "none"
RUN_NAME: "text or None" = None  # the run's name in the tracker (None: OUTPUT_DIR's last part)

# ---- evaluation on held-out prompts (also evaluate.py) -------------------------------------------
# held-out prompts (PROMPT_KEY, DATASET_CONFIG as DATASET's) scored at step 0 and at the end
EVAL_DATASET: "text or None" = None
# split to read from EVAL_DATASET (hub ids and save_to_disk folders; files have one)
EVAL_SPLIT: "text" = "test"
# also evaluate every this many steps (None: at step 0 and at the end only)
EVAL_EVERY: "int >= 1 or None" = None
# evaluate on the first this-many prompts of EVAL_DATASET (None: all)
EVAL_MAX_PROMPTS: "int >= 1 or None" = None
# responses sampled per held-out prompt, with the same random numbers at every evaluation
EVAL_SAMPLES: "int >= 1" = 8
