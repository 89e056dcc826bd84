"""Devices and precision; loading causal LMs, tokenizers and LoRA adapters; the critic (ValueModel),
the reward model with its own tokenizer (RewardModel) and the weighted sum of scorers (Scorer);
prompts as text."""
import os
from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn

from .distributed import no_grad_for
from .preflight import (ConfigError, call_reward_function, is_reward_function, load_reward_function,
                        reward_label,
                       reward_metric_names, reward_names)


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
        raise ConfigError(
            f"{', '.join(named_gpus)} would put every torchrun process on the same GPU: leave "
            "DEVICE_* at 'auto' (process r takes cuda:r, or cuda:2r and cuda:2r+1 with two GPUs "
            "each) or 'cpu'")
    if n_gpus and not per_rank and "auto" in (cfg.DEVICE_POLICY, cfg.DEVICE_CRITIC):
        raise ConfigError(
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
            raise ConfigError(
                f"DEVICE_{role.upper()}={name!r} is not a device name: use 'cpu', 'cuda:0', ... "
                f"or 'auto'") from None
        if device.type == "cuda" and (device.index or 0) >= n_gpus:
            raise ConfigError(
                f"DEVICE_{role.upper()}={name!r} but this machine has {n_gpus} GPU(s): "
                f"set it to 'auto', 'cpu' or an existing cuda:N")
        devices[role] = device
    if sharded and len(set(devices.values())) > 1:
        raise ConfigError(
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
    # in float32 the copy would be the policy itself (preflight.settings_without_effect says so)
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
        raise ConfigError(
            f"BATCH_SIZE={cfg.BATCH_SIZE} prompts per step cannot be split evenly over {world} "
            f"processes: make it a multiple of {world} (each process takes "
            f"BATCH_SIZE / {world})")
    if cfg.DYNAMIC_SAMPLING:
        raise ConfigError(
            "DYNAMIC_SAMPLING is not supported under torchrun yet (the processes would need to "
            "agree on how many groups each keeps): set --DYNAMIC_SAMPLING=False, or run one "
            "process")


def load_tokenizer(name, setting, log=print):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(name)
    if len(tok) == 0:
        raise ConfigError(
            f"{setting}={name!r} has no tokenizer (transformers built an empty one): save the "
            f"tokenizer beside the weights (tokenizer.save_pretrained(folder)).")
    if tok.eos_token_id is None:
        raise ConfigError(
            f"the tokenizer of {setting}={name!r} has no EOS token, so responses could never end: "
            f"set tokenizer.eos_token and save it again.")
    if tok.pad_token_id is None:
        log(f"notice: the tokenizer of {setting} has no pad token; using its EOS token "
            f"{tok.eos_token!r} for padding")
        tok.pad_token = tok.eos_token
    return tok


def _no_dropout(name, **kwargs):
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
    model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **_no_dropout(name))
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
        # is left out (setup.py says it in one line).
        self.new_head = self.fresh_head or not classifier
        with errors_only() if self.new_head else nullcontext():
            model = AutoModelForSequenceClassification.from_pretrained(
                name, dtype=dtype, ignore_mismatched_sizes=self.fresh_head,
                **_no_dropout(name, num_labels=1)
            ).to(device).eval()
        disable_dropout(model)
        if not isinstance(getattr(model, "score", None), nn.Linear):
            raise ConfigError(
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


class RewardModel:
    """Scores (prompt, response) text with a sequence classifier and its own tokenizer: a text pair
    for encoders such as DeBERTa (the OpenAssistant reward models' format), the chat template where
    the tokenizer has one. Text longer than the model reads (the tokenizer's model_max_length or the
    config's max_position_embeddings) loses the start of its prompt: the response, the part being
    scored, stays whole. Only a response that alone exceeds the limit is cut, from its start.
    `truncated` counts the rows cut in the last call."""

    def __init__(self, name, device, dtype, shard=None, label=None):
        from transformers import AutoModelForSequenceClassification
        self.tokenizer = load_tokenizer(name, "REWARD_MODEL")
        self.tokenizer.truncation_side = "left"
        self.model = disable_dropout(AutoModelForSequenceClassification.from_pretrained(
            name, dtype=dtype, **_no_dropout(
                name))).to("cpu" if shard else device).eval().requires_grad_(False)
        if shard:  # shard(model) moves it to the device in shards
            shard(self.model)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        limits = [n for n in (self.tokenizer.model_max_length,
                              getattr(self.model.config, "max_position_embeddings",
                                                                        None)) if n and n < 10 ** 6]
        self.device, self.max_length, self.truncated = device, min(limits, default=None), 0
        # the output that is the reward (REWARD_LABEL)
        self.label = reward_label(name, self.model.config, label)

    def encode(self, prompts, responses, **kwargs):
        """A chat template receives the whole conversation with the response as the assistant's
        turn; a pair encoder (DeBERTa) the prompt's text (prompt_text) and the response."""
        tok = self.tokenizer
        if tok.chat_template:
            texts = [
                tok.apply_chat_template(conversation(p) + [{"role": "assistant", "content": r}],
                                        tokenize=False)
                for p, r in zip(prompts, responses)]
            return tok(texts, add_special_tokens=False, **kwargs)
        return tok([prompt_text(p) for p in prompts], responses, **kwargs)

    def fit(self, prompt, response, length):
        """The prompt shortened from its start until the pair's `length` fits max_length: a
        conversation first loses its oldest messages, then text loses as many of its first tokens as
        the pair is too long (a few more when decoding and re-encoding shifts a token boundary).
        Empty when the response alone is too long."""
        messages = not isinstance(prompt, str)
        for _ in range(4 + (len(prompt) if messages else 0)):
            if length <= self.max_length:
                break
            if messages and len(prompt) > 1:
                prompt = prompt[1:]
            else:
                text = prompt[0]["content"] if messages else prompt
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                text = "" if length - self.max_length >= len(ids) else self.tokenizer.decode(
                    ids[length - self.max_length:])
                prompt = [{**prompt[0], "content": text}] if messages else text
                if not text:
                    break
            length = len(self.encode([prompt], [response])["input_ids"][0])
        return prompt

    def __call__(self, prompts, responses, columns=None):
        batch = self.encode(prompts, responses, padding=True, return_tensors="pt")
        lengths = batch["attention_mask"].sum(1).tolist()
        long = [i for i, n in enumerate(lengths) if self.max_length is not None
                and n > self.max_length]
        self.truncated = len(long)
        if long:  # encoded a second time only when some row is too long
            prompts = list(prompts)
            for i in long:
                prompts[i] = self.fit(prompts[i], responses[i], lengths[i])
            batch = self.encode(prompts, responses, padding=True, truncation=True,
                                max_length=self.max_length,
                                return_tensors="pt")  # cuts only an over-long response
        with no_grad_for(self.model):
            return self.model(**batch.to(self.device)).logits[:, self.label].float()  # (B,)


def load_scorer(name, device, dtype, shard=None, label=None):
    """One REWARD_MODEL name -> a callable(prompts, responses, columns) -> (B,) float scores: a
    sequence classifier (sharded by shard(model) where given) or a user function given as
    module:function. NaN/inf pass through to the trainer's non-finite guard."""
    if is_reward_function(name):
        fn = load_reward_function(name)
        return lambda prompts, responses, columns=None: call_reward_function(
            fn, prompts, responses, columns)
    return RewardModel(name, device, dtype, shard, label)


class Scorer:
    """REWARD_MODEL's scorers with REWARD_WEIGHTS: the reward is the weighted sum of their scores
    (TRL's GRPO sums its reward_funcs with reward_weights the same way). scorer(prompts, responses,
    columns) -> the (B,) reward and the (B, number of scorers) scores it sums; `names` are the
    scorers' metric names, `truncated` counts the rows cut to fit the reward models in the last
    call."""

    def __init__(self, names, weights, device, dtype, shard=None, label=None):
        names = reward_names(names)
        self.names, self.weights = reward_metric_names(
            names), torch.tensor(weights or [1.0] * len(names))
        self.parts = [load_scorer(name, device, dtype, shard, label) for name in names]
        self.truncated = 0

    def __call__(self, prompts, responses, columns=None):
        # (B, S)
        parts = torch.stack(
            [part(prompts, responses, columns).float().cpu() for part in self.parts], 1)
        self.truncated = sum(getattr(part, "truncated", 0) for part in self.parts)
        return (parts * self.weights).sum(1), parts


def conversation(prompt, system_prompt=None):
    """A prompt as a list of messages: text becomes the user's turn; system_prompt goes first unless
    the conversation has a system message of its own."""
    messages = [
        {"role": "user", "content": prompt}] if isinstance(
            prompt, str) else [dict(m) for m in prompt]
    if system_prompt is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def as_seen(prompt, system_prompt=None):
    """A dataset's prompt as the policy sees it and the scorers receive it: unchanged, or with
    SYSTEM_PROMPT, a conversation that starts with it."""
    return prompt if system_prompt is None else conversation(prompt, system_prompt)


def prompt_text(prompt):
    """The text of a prompt for a reward model without a chat template (a text-pair encoder such as
    the OpenAssistant DeBERTa): a conversation's user and assistant turns, one paragraph each."""
    return prompt if isinstance(
        prompt, str) else "\n\n".join(m["content"] for m in prompt if m["role"] != "system")
