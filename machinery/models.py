"""Models: their folders and hub ids checked before anything loads (config.json, weight headers,
tokenizer files, LoRA targets), devices and precision, loading causal LMs, tokenizers and LoRA
adapters, the critic (ValueModel), and the sampler's copy of the policy."""
import importlib.util
import json
import os
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn

from .script import Refusal, first_line


def resolve_devices(cfg, n_gpus, local_rank=0, local_world=1, sharded=False):
    """DEVICE_* settings -> torch devices. auto: with 2+ GPUs policy and reference on cuda:0, critic
    and reward on cuda:1; with one GPU all on cuda:0; without, all on cpu. Under torchrun each of
    the local_world processes on a node gets its own block of the node's GPUs: rank r uses cuda:2r
    and cuda:2r+1 when there are two per process, cuda:r when there is one. Sharded, each process
    takes one GPU for all four models (the shards of every model spread over all the GPUs
    instead)."""
    per_rank = n_gpus // local_world
    if sharded:
        per_rank = min(per_rank, 1)
    settings = {f"DEVICE_{role}": getattr(cfg, f"DEVICE_{role}")
                for role in ("POLICY", "REF", "CRITIC", "REWARD")}
    named_gpus = [f"{k}={v!r}" for k, v in settings.items() if str(v).startswith("cuda")]
    if local_world > 1 and named_gpus:
        raise Refusal(
            f"{', '.join(named_gpus)} would put every torchrun process on the same GPU: leave "
            "DEVICE_* at 'auto' (process r takes cuda:r, or cuda:2r and cuda:2r+1 with two GPUs "
            "each) or 'cpu'")
    if n_gpus and not per_rank and "auto" in (cfg.DEVICE_POLICY, cfg.DEVICE_CRITIC):
        raise Refusal(
            f"torchrun started {local_world} processes on this node but it has {n_gpus} GPU(s): "
            f"use --nproc_per_node={n_gpus} or fewer (or DEVICE_POLICY/DEVICE_CRITIC=cpu)")
    first = local_rank * per_rank
    policy = cfg.DEVICE_POLICY if cfg.DEVICE_POLICY != "auto" else (
        f"cuda:{first}" if per_rank else "cpu")
    critic = cfg.DEVICE_CRITIC if cfg.DEVICE_CRITIC != "auto" else (
        f"cuda:{first + 1}" if per_rank >= 2 else policy)
    devices = {"policy": policy, "ref": cfg.DEVICE_REF if cfg.DEVICE_REF != "auto" else policy,
               "critic": critic,
               "reward": cfg.DEVICE_REWARD if cfg.DEVICE_REWARD != "auto" else critic}
    for role, name in devices.items():
        try:
            device = torch.device(name)
        except RuntimeError:
            raise Refusal(
                f"DEVICE_{role.upper()}={name!r} is not a device name: use 'cpu', 'cuda:0', ... "
                f"or 'auto'") from None
        if device.type == "cuda" and (device.index or 0) >= n_gpus:
            raise Refusal(
                f"DEVICE_{role.upper()}={name!r} but this machine has {n_gpus} GPU(s): "
                f"set it to 'auto', 'cpu' or an existing cuda:N")
        devices[role] = device
    if sharded and len(set(devices.values())) > 1:
        raise Refusal(
            f"sharding (SHARDING={cfg.SHARDING!r} under torchrun) shards the four models over one "
            f"device per process, but DEVICE_* name {sorted(set(map(str, devices.values())))}: "
            "leave them at 'auto', or use SHARDING='none'")
    return devices


def resolve_dtype(name, device):
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def autocast(device, dtype):
    """Mixed precision for the float32 trained models when DTYPE is 16-bit; a no-op in float32."""
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()


def rollout_copy_on(cfg, dtype, sharded):
    """ROLLOUT_COPY: "auto" samples from a DTYPE copy of the policy when the models compute in a
    16-bit DTYPE, unsharded and without LoRA (whose frozen base is stored in DTYPE already)."""
    if cfg.ROLLOUT_COPY == "auto":
        return dtype != torch.float32 and not sharded and not cfg.LORA_RANK
    # in float32 the copy would be the policy itself (settings.settings_without_effect says so)
    return bool(cfg.ROLLOUT_COPY) and dtype != torch.float32


def dtype_copy(model, dtype):
    """A frozen copy of model with its floating-point parameters in dtype, for the sampler
    (ROLLOUT_COPY): a 16-bit forward then reads 2 bytes per weight, where autocast over float32
    weights reads 4 and writes 2 more for each cast. Buffers stay as they are (rotary frequencies
    in float32). Tied weights stay tied. Each parameter is cast as the copy is made (deepcopy's memo
    given the casts), so no second float32 copy of the model ever exists."""
    import copy
    memo = {id(p): nn.Parameter(p.detach().to(dtype) if p.is_floating_point() else
                                p.detach().clone(), requires_grad=False)
            for p in model.parameters()}
    return copy.deepcopy(model, memo).requires_grad_(False).eval()


@torch.no_grad()
def refresh_copy(twin, model):
    """dtype_copy's twin given model's current weights, cast in place (no reload, no allocation)."""
    for t, p in zip(twin.parameters(), model.parameters(), strict=True):
        t.copy_(p)


# Config fields of models whose logits are not the output layer's product alone (Gemma's soft cap,
# Cohere's scale, Granite's divisor): their log-probs are not computed a chunk at a time.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def output_layer_of(model):
    """(parent module, attribute name, module) of a causal LM's output layer, found by identity
    among its modules (so a LoRA- or otherwise wrapped model works), or None where the logits are
    not that layer's output alone (LOGIT_TRANSFORMS) or it has none."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    config = getattr(model, "config", None)
    if head is None or any(getattr(config, k, None) not in (None, 1, 1.0)
                           for k in LOGIT_TRANSFORMS):
        return None
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if child is head:
                return module, child_name, head
    return None


@contextmanager
def without_output_layer(found):
    """The model of output_layer_of(model) = found with its output layer replaced by the identity,
    so that its forward returns the final hidden states of the kept positions where it returned
    logits; the layer is put back on exit."""
    parent, name, head = found
    setattr(parent, name, torch.nn.Identity())
    try:
        yield head
    finally:
        setattr(parent, name, head)


@contextmanager
def errors_only():
    """transformers' warnings and reports silenced for a load whose outcome is intended."""
    from transformers.utils import logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def check_distributed(cfg, world):
    """What data parallelism over `world` processes needs of the settings."""
    if world == 1:
        return
    if cfg.BATCH_SIZE % world:
        raise Refusal(
            f"BATCH_SIZE={cfg.BATCH_SIZE} prompts per step cannot be split evenly over {world} "
            f"processes: make it a multiple of {world} (each process takes "
            f"BATCH_SIZE / {world})")
    if cfg.DYNAMIC_SAMPLING:
        raise Refusal(
            "DYNAMIC_SAMPLING is not supported under torchrun yet (the processes would need to "
            "agree on how many groups each keeps): set --DYNAMIC_SAMPLING=False, or run one "
            "process")


def load_tokenizer(name, setting, log=print):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(name)
    if len(tok) == 0:
        raise Refusal(
            f"{setting}={name!r} has no tokenizer (transformers built an empty one): save the "
            f"tokenizer beside the weights (tokenizer.save_pretrained(folder)).")
    if tok.eos_token_id is None:
        raise Refusal(
            f"the tokenizer of {setting}={name!r} has no EOS token, so responses could never end: "
            f"set tokenizer.eos_token and save it again.")
    if tok.pad_token_id is None:
        log(f"notice: the tokenizer of {setting} has no pad token; using its EOS token "
            f"{tok.eos_token!r} for padding")
        tok.pad_token = tok.eos_token
    return tok


def no_dropout(name, **kwargs):
    """from_pretrained kwargs that zero every dropout probability in the config (N+ detail 6:
    dropout makes the log-probs of the rollout and of the update disagree): `*dropout*`, and GPT-2's
    `*_pdrop`. Some attention code reads these numbers directly, so they are zeroed here as well as
    in the modules (disable_dropout)."""
    from transformers import AutoConfig
    config = AutoConfig.from_pretrained(name, **kwargs)
    for key, value in vars(config).items():
        if ("dropout" in key or key.endswith("pdrop")) and isinstance(value, float):
            setattr(config, key, 0.0)
    return {"config": config}


def disable_dropout(model):
    """p = 0 on every nn.Dropout module, whatever the config calls it (TRL's
    disable_dropout_in_model): training mode, which gradient checkpointing needs, must not switch
    dropout on."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def load_causal_lm(name, device, dtype):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **no_dropout(name))
    return disable_dropout(model).to(device).eval()


def add_lora(model, cfg, task_type):
    """Trainable LoRA adapters (Hu et al. 2021) on a frozen model, through peft. peft keeps the
    adapters in float32 over a bfloat16 base (autocast_adapter_dtype), so they have float32 master
    weights; with task_type "SEQ_CLS" the value head is trained in full (peft's modules_to_save)."""
    import peft
    config = peft.LoraConfig(r=cfg.LORA_RANK, lora_alpha=cfg.LORA_ALPHA, lora_dropout=0.0,
                             task_type=task_type, target_modules=cfg.LORA_TARGET_MODULES)
    return peft.get_peft_model(model, config)


def enable_gradient_checkpointing(model):
    """Recompute each layer's activations in the backward pass instead of keeping them. transformers
    checkpoints only in training mode; train() changes nothing else here, since every dropout is
    zeroed at load."""
    model.activation_checkpointing_enable()  # non-reentrant torch.utils.checkpoint
    model.train()


def load_trained_weights(model, folder):
    """Loads into model what its save_pretrained wrote to folder: with LoRA the adapters and the
    head, else the full weights (read back with from_pretrained, which knows which ones are
    tied)."""
    if os.path.exists(os.path.join(folder, "adapter_config.json")):
        import peft
        from safetensors.torch import load_file
        peft.set_peft_model_state_dict(model,
                                       load_file(os.path.join(folder, "adapter_model.safetensors")))
    else:
        model.load_state_dict(type(model).from_pretrained(folder).state_dict())


class ValueModel(nn.Module):
    """Critic: a transformer backbone with a scalar head read at every position, one value per
    token. Loaded as AutoModelForSequenceClassification(num_labels=1), which works both for a
    causal-LM folder (the head starts fresh) and a reward-model folder (the head starts from the
    reward head, N+ detail 8). Its own forward would pool the last token; we apply the head to every
    hidden state instead."""

    def __init__(self, name, device, dtype=torch.float32, lora=None):
        super().__init__()
        from transformers import AutoConfig, AutoModelForSequenceClassification
        # A classifier with several outputs (a 2-label sentiment model) is a valid start too: its
        # backbone is kept and its head, of another shape, starts fresh, as it does from a causal
        # LM.
        config = AutoConfig.from_pretrained(name)
        classifier = any(a.endswith("ForSequenceClassification")
                         for a in config.architectures or [])
        self.fresh_head = classifier and config.num_labels != 1
        # A head that the folder did not hold (a causal LM's, or a classifier's of another shape)
        # is new by design: transformers' load report, a table that lists its weights as MISSING,
        # is left out (load_models says it in one line).
        self.new_head = self.fresh_head or not classifier
        with errors_only() if self.new_head else nullcontext():
            model = AutoModelForSequenceClassification.from_pretrained(
                name, dtype=dtype, ignore_mismatched_sizes=self.fresh_head,
                **no_dropout(name, num_labels=1)
            ).to(device).eval()
        disable_dropout(model)
        if not isinstance(getattr(model, "score", None), nn.Linear):
            raise Refusal(
                f"CRITIC_MODEL={name!r} ({type(model).__name__}) has no linear `score` head "
                "to read per-token values from: use a decoder such as the "
                "ACTOR_MODEL folder.")
        # The new head starts at zero, as lm-human-preferences starts its value head
        # (language/model.py: fc_layer(..., scale=0) for the 'value' head): the first advantages
        # are then the rewards', not a random head's. TRL and verl keep transformers' N(0, 0.02)
        # draw, which on SmolLM2-135M-Instruct read values of 0.98 +- 0.71 against rewards of
        # 0.03 (docs/benchmarks.md). A reward model's head is kept (N+ detail 8).
        if self.new_head:
            with torch.no_grad():
                model.score.weight.zero_()
                if model.score.bias is not None:
                    model.score.bias.zero_()
        if lora is not None:  # (cfg) LoRA adapters on the backbone, the head trained in full
            model = add_lora(model, lora, "SEQ_CLS")
        inner = model.get_base_model() if lora is not None else model
        self.model, self.backbone, self.head = model, inner.base_model, inner.score

    def forward(self, input_ids, attention_mask, position_ids):  # (B, T) x3 -> (B, T)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids,
                               use_cache=False).last_hidden_state  # (B, T, H)
        # not a view: FSDP2 hooks the output for the backward
        return self.head(hidden).squeeze(-1).float().clone()


def is_hub_id(name):
    """`gpt2` or `owner/name`: what the hub accepts as a repository id (a path such as ./x, /x or
    a/b/c is not)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def is_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is no package
        return False


def check_hub_id(setting, name, repo_type="model"):
    """A name that is no local path goes to the hub. Refuses at once, without the hub client's
    retries (half a minute), when the hub cannot be reached and the model is not in the local hub
    cache."""
    from huggingface_hub import constants, get_session, try_to_load_from_cache
    from huggingface_hub.utils import build_hf_headers
    local = "a local folder" if repo_type == "model" else "a local file or folder"
    if repo_type == "model" and isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # in the hub cache: from_pretrained finds it, offline too
    if constants.is_offline_mode():
        if repo_type == "dataset":
            return  # datasets looks in its own cache; load_prompts turns its error into one line
        raise Refusal(
            f"{setting}={name!r} is neither {local} nor in the hub cache, and HF_HUB_OFFLINE is "
            f"set: download it once with a network (hf download {name}), or give a local folder.")
    url = f"{constants.ENDPOINT}/api/{repo_type}s/{name}"
    try:  # one request: no retries, a 10 s timeout (the hub client's own default)
        response = get_session().get(url, headers=build_hf_headers(), timeout=10,
                                     follow_redirects=True)
    except Exception as e:  # DNS failure, refused, timed out, proxy
        reason = first_line(e) or type(e).__name__
        raise Refusal(
            f"{setting}={name!r} is neither {local} nor reachable on the hub "
            f"({constants.ENDPOINT}: {reason}). Check the path, or connect; a copy already in the "
            "hub cache loads with HF_HUB_OFFLINE=1.") from None
    if response.status_code in (401, 403, 404):
        raise Refusal(
            f"{setting}={name!r} is neither {local} nor a {repo_type} on the hub (HTTP "
            f"{response.status_code}); a private or gated one needs `hf auth login` "
            "first.")


def load_model_config(setting, name):
    """AutoConfig of a local folder or hub id, with a message that says which setting is wrong."""
    from transformers import AutoConfig
    if os.path.isdir(name):
        if not os.path.exists(os.path.join(name, "config.json")):
            raise Refusal(
                f"{setting}={name!r} is a folder without config.json: give a folder written by "
                f"save_pretrained.")
        problem = weights_problem(name)
        if problem:
            raise Refusal(
                f"{setting}={name!r}: {problem}; save the model again with save_pretrained.")
    elif os.path.exists(name):
        raise Refusal(
            f"{setting}={name!r} is a file: give the folder save_pretrained wrote, or a hub id.")
    elif not is_hub_id(name):
        from tasks import smollm2
        if os.path.abspath(name) == os.path.abspath(smollm2.POLICY_DIR):
            raise Refusal(
                f"{setting}={name!r} (SmolLM2-135M-Instruct) is not built yet: "
                f"{smollm2.INSTALL}, then python -m tasks.smollm2 (45 s, once).")
        raise Refusal(
            f"{setting}={name!r}: no such folder. Give a folder written by save_pretrained or a "
            "hub id such as Qwen/Qwen3-0.6B.")
    else:
        if setting == "REWARD_MODEL" and "/" not in name and is_module(name):
            raise Refusal(
                f"REWARD_MODEL={name!r} is a Python module here, not a model: name its reward "
                f"function as {name}:FUNCTION.")
        check_hub_id(setting, name)
    try:
        return AutoConfig.from_pretrained(name)
    except Exception as e:  # unknown model_type, malformed config.json, ...
        raise Refusal(f"{setting}={name!r} could not be read as a transformers model: "
                          f"{first_line(e) or type(e).__name__}") from None


def safetensors_problem(path):
    """What is wrong with a .safetensors file (truncated, not safetensors), read from its header
    alone; None if whole. Layout: an 8-byte little-endian header length, a JSON header, then the
    tensors' bytes."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                return f"{os.path.basename(path)} is truncated or not a safetensors file"
            header = json.loads(f.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
                  default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return f"{os.path.basename(path)} is not a readable safetensors file"
    if size != 8 + n + end:
        return f"{os.path.basename(path)} is truncated ({size} bytes of {8 + n + end})"
    return None


def weights_problem(folder):
    """What is wrong with the weight files of a save_pretrained folder, or None."""
    names = os.listdir(folder)
    weights = [n for n in names if n.endswith(".safetensors")]
    if not weights and not any(n.endswith((".bin", ".pt", ".pth")) for n in names):
        return "no weights file (model.safetensors) in it"
    return next(filter(None,
                       (safetensors_problem(os.path.join(folder, n)) for n in sorted(weights))),
                       None)


def lora_target_problem(setting, name, config, targets, auto_class):
    """LORA_TARGET_MODULES must name modules the model has; read from a weightless (meta-device)
    copy."""
    if targets == "all-linear":
        return None
    with torch.device("meta"):
        model = auto_class.from_config(config)
    names = [n for n, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if not missing:
        return None
    linear = sorted({n.rsplit(".", 1)[-1] for n,
                     m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    return (
        f"LORA_TARGET_MODULES names {missing}, which {setting}={name!r} ({type(model).__name__}) "
        f"lacks: its linear layers are {linear}, or use 'all-linear'")


# The files a tokenizer's vocabulary is saved in: a fast tokenizer's, BPE's and WordPiece's by name,
# SentencePiece (spiece.model, tokenizer.model, ...) and tiktoken by ending.
TOKENIZER_FILES, TOKENIZER_ENDINGS = (
    "tokenizer.json", "vocab.json", "vocab.txt"), (".model", ".tiktoken")


# The files a tokenizer's vocabulary is saved in: a fast tokenizer's, BPE's and WordPiece's by name,
# SentencePiece (spiece.model, tokenizer.model, ...) and tiktoken by ending.
TOKENIZER_FILES, TOKENIZER_ENDINGS = (
    "tokenizer.json", "vocab.json", "vocab.txt"), (".model", ".tiktoken")


def check_tokenizer_files(setting, name):
    """A local model folder must hold its tokenizer: without one, transformers builds an empty
    tokenizer that fails only when the first prompt is encoded."""
    if os.path.isdir(name) and not any(f in TOKENIZER_FILES or f.endswith(TOKENIZER_ENDINGS)
                                       for f in os.listdir(name)):
        raise Refusal(
            f"{setting}={name!r} holds no tokenizer files ({', '.join(TOKENIZER_FILES)}, *.model): "
            "save the tokenizer beside the weights (tokenizer.save_pretrained(folder)).")


def check_causal_lm(setting, name):
    """The config of a causal LM with its LM head and tokenizer (a classifier or critic folder is
    refused: its LM head would be random); read from config.json alone."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING
    config = load_model_config(setting, name)
    archs = config.architectures or []
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING or \
            (archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)):
        raise Refusal(
            f"{setting}={name!r} is a {', '.join(archs) or config.model_type}, not a causal LM: "
            "give a decoder checkpoint with its LM head, such as Qwen/Qwen3-0.6B or a run's "
            "policy/ folder.")
    check_tokenizer_files(setting, name)
    return config


def check_trained_models(cfg, critic):
    """Reads only config.json files and weight-file headers: the policy (and reference) and, for an
    algorithm with a critic, the critic are there, whole, of the right kind, sharing a vocabulary;
    LORA_TARGET_MODULES names modules they have."""
    from transformers import (MODEL_FOR_CAUSAL_LM_MAPPING,
                              MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
                              AutoModelForCausalLM, AutoModelForSequenceClassification)
    actor = check_causal_lm("ACTOR_MODEL", cfg.ACTOR_MODEL)
    if critic:  # the algorithms without one load none
        critic = load_model_config("CRITIC_MODEL", cfg.CRITIC_MODEL)
        kind = type(critic)
        if kind not in MODEL_FOR_CAUSAL_LM_MAPPING or \
                kind not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
            raise Refusal(
                f"CRITIC_MODEL={cfg.CRITIC_MODEL!r} is a {critic.model_type!r} model: the critic "
                "reads the policy's token ids, so give a decoder sharing the policy's tokenizer "
                "(usually the ACTOR_MODEL folder itself, or a reward model trained from it).")
        if getattr(critic, "vocab_size", None) != getattr(actor, "vocab_size", None):
            raise Refusal(
                f"CRITIC_MODEL vocabulary ({critic.vocab_size}) differs from ACTOR_MODEL's "
                f"({actor.vocab_size}): the critic reads the policy's token ids, so it must share "
                "the policy's tokenizer.")
    if cfg.LORA_RANK:
        problem = lora_target_problem("ACTOR_MODEL", cfg.ACTOR_MODEL, actor,
                                      cfg.LORA_TARGET_MODULES, AutoModelForCausalLM)
        if problem is None and critic:
            problem = lora_target_problem("CRITIC_MODEL", cfg.CRITIC_MODEL, critic,
                                          cfg.LORA_TARGET_MODULES,
                                          AutoModelForSequenceClassification)
        if problem:
            raise Refusal(problem)


def load_models(cfg, critic, reference, devices, dtype, sharded, log=print):
    """(policy, reference copy or None, critic or None), each on its device (sharded: on the CPU,
    to be moved in shards, so that no GPU ever holds a model whole). The policy and critic keep
    float32 weights; the reference (when `reference`: a KL term is used) is a frozen float32 copy of
    the policy, run as the policy is, so that the KL at step 0 is 0. With LoRA the frozen base
    weights may be in DTYPE (the adapters stay float32) and no copy loads: the reference is the
    policy with its adapters off. The critic (when `critic`) is CRITIC_MODEL's backbone under a
    value head (ValueModel)."""
    load_on = (lambda role: torch.device("cpu")) if sharded else devices.get
    lora = cfg if cfg.LORA_RANK else None
    policy = load_causal_lm(cfg.ACTOR_MODEL, load_on("policy"), dtype if lora else torch.float32)
    if lora:
        policy = add_lora(policy, cfg, "CAUSAL_LM")
    ref_policy = load_causal_lm(cfg.ACTOR_MODEL, load_on("ref"), torch.float32
                                ).requires_grad_(False) if reference and not lora else None
    value_model = None
    if critic:
        value_model = ValueModel(cfg.CRITIC_MODEL, load_on("critic"),
                                 dtype if lora else torch.float32, lora)
        if value_model.fresh_head:
            log(f"notice: CRITIC_MODEL={cfg.CRITIC_MODEL!r} is a classifier with several outputs; "
                "the critic keeps its backbone and starts a one-output value head at zero")
        elif value_model.new_head and not cfg.RESUME:
            log("critic: CRITIC_MODEL's layers under a new value head, started at zero")
    if cfg.GRADIENT_CHECKPOINTING:
        for model in filter(None, [policy, value_model and value_model.model]):
            enable_gradient_checkpointing(model)
    return policy, ref_policy, value_model
