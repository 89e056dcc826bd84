"""What PPOTrainer loads before its first step, as methods it inherits: the prompts (checked and
tokenised before any weight loads) and the models, on their devices or sharded with FSDP2."""
import random
from contextlib import nullcontext
from functools import partial

import numpy as np
import torch

from .distributed import shard_model, sharding_on
from .models import (Scorer, ValueModel, add_lora, as_seen, enable_gradient_checkpointing,
                     dtype_copy, load_causal_lm, load_tokenizer, resolve_devices, resolve_dtype,
                     rollout_copy_on)
from .preflight import (check_models, check_output_dir, check_positions, check_same_data,
                        check_vocabulary, data_fingerprint, load_prompts,
                        reward_columns, settings_without_effect)
from .sampling import eos_token_ids, tokenize_prompts, uses_chat_template


class Setup:
    """load_data() and load_models() of a PPOTrainer (self.cfg, self.ranks, self.log,
    self.algorithm, self.has_reference set)."""

    def load_data(self):
        """The prompts and their columns, the devices, the seeds, the tokenizer and the tokenised
        prompts; every check that needs no weights comes first."""
        cfg, log = self.cfg, self.log
        # Cheap checks first: every file is read and every model folder inspected before any weight
        # loads. the checkpoint to resume from, checked whole
        self.resume_from = check_output_dir(cfg, log)
        # The prompts as the policy sees them and scorers receive them (with SYSTEM_PROMPT), and the
        # dataset's other columns, which reward functions may take by name (an answer to check
        # against, say).
        prompts, self.columns = load_prompts(cfg, min_prompts=cfg.BATCH_SIZE)
        self.prompts = [as_seen(p, cfg.SYSTEM_PROMPT) for p in prompts]
        # what a checkpoint records of the data: the prompts and the columns the rewards read
        self.data_fingerprint = data_fingerprint(
            self.prompts, reward_columns(cfg.REWARD_MODEL, self.columns))
        self.eval_prompts = self.eval_columns = None
        if cfg.EVAL_DATASET is not None:
            prompts, self.eval_columns = load_prompts(cfg, held_out=True)
            self.eval_prompts = [as_seen(p, cfg.SYSTEM_PROMPT) for p in prompts]
        check_models(cfg, self.prompts, self.columns, self.eval_columns)
        # FSDP2 (machinery/distributed.py)
        self.sharded = sharding_on(cfg.SHARDING, self.ranks.world)
        self.devices = resolve_devices(cfg, torch.cuda.device_count(), self.ranks.local_rank,
                                       self.ranks.local_world, self.sharded)
        if self.devices["policy"].type == "cuda":
            # NCCL's collectives run on the current device
            torch.cuda.set_device(self.devices["policy"])
        self.dtype = resolve_dtype(cfg.DTYPE, self.devices["policy"])

        random.seed(cfg.SEED)
        np.random.seed(cfg.SEED)
        torch.manual_seed(cfg.SEED)

        self.tokenizer = load_tokenizer(cfg.ACTOR_MODEL, "ACTOR_MODEL", log)
        check_vocabulary(cfg, self.tokenizer)
        self.eos_ids = eos_token_ids(self.tokenizer, cfg.ACTOR_MODEL).to(self.devices["policy"])
        # every prompt through the chat template, before any weight loads
        tokenize = partial(tokenize_prompts, self.tokenizer, chat_template=cfg.CHAT_TEMPLATE,
                           max_length=cfg.MAX_PROMPT_LENGTH, system_prompt=cfg.SYSTEM_PROMPT,
                           enable_thinking=cfg.ENABLE_THINKING)
        self.prompt_ids, self.prompts_truncated = tokenize(
            self.prompts, source=f"DATASET={cfg.DATASET!r}, column {cfg.PROMPT_KEY!r}")
        self.eval_prompt_ids = tokenize(
            self.eval_prompts, source=f"EVAL_DATASET={cfg.EVAL_DATASET!r}, column "
                                      f"{cfg.PROMPT_KEY!r}")[0] \
            if self.eval_prompts is not None else None
        check_positions(cfg, self.prompt_ids + (self.eval_prompt_ids or []))
        for line in settings_without_effect(
                cfg, self.tokenizer.chat_template if uses_chat_template(
                    self.tokenizer, cfg.CHAT_TEMPLATE) else None,
                rollout_copy_on(cfg, self.dtype, self.sharded), self.prompts, self.eval_prompts):
            log(f"notice: {line}")
        if cfg.RESUME:
            check_same_data(self.resume_from, self.data_fingerprint)
        # all checked
        log("settings:\n" + "\n".join(f"  {k} = {v!r}" for k, v in vars(cfg).items()))

    def load_models(self):
        """The policy, the reference (a frozen float32 copy of the policy, or with LoRA the policy
        with its adapters off: chosen here once, as self.reference = (model, context)), the critic
        when the algorithm has one, and the scorers (REWARD_MODEL)."""
        cfg, log = self.cfg, self.log
        # The algorithm decides which models load: the critic only for PPO, the reference only when
        # a KL term is used (or ALWAYS_LOAD_REFERENCE asks for the kl metric anyway). Sharded, each
        # loads on the CPU and moves to its device in shards (shard_model), so that no GPU ever
        # holds it whole.
        dev = self.devices
        load_on = (lambda role: torch.device("cpu")) if self.sharded else dev.get
        # With LoRA the frozen base weights may be bfloat16 (the adapters stay float32), and the
        # reference is the policy with its adapters switched off: no second copy of the weights.
        lora = cfg if cfg.LORA_RANK else None
        self.policy = load_causal_lm(cfg.ACTOR_MODEL, load_on("policy"),
                                     self.dtype if lora else torch.float32)
        if lora:
            self.policy = add_lora(self.policy, cfg, "CAUSAL_LM")
        self.ref_policy = None
        # float32 like the policy, run the same way: at step 0 the KL is 0
        if self.has_reference and not lora:
            self.ref_policy = load_causal_lm(
                cfg.ACTOR_MODEL, load_on("ref"), torch.float32).requires_grad_(False)
        self.reference = None if not self.has_reference else (
            self.ref_policy, nullcontext) if not lora else \
            (self.policy, self.policy.disable_adapter)
        self.critic = None
        if self.algorithm.critic:
            self.critic = ValueModel(cfg.CRITIC_MODEL, load_on("critic"),
                                     self.dtype if lora else torch.float32, lora)
            if self.critic.fresh_head:
                log(f"notice: CRITIC_MODEL={cfg.CRITIC_MODEL!r} is a classifier with several "
                    "outputs; the critic keeps its backbone and starts a one-output value head at "
                    "zero")
            elif self.critic.new_head and not cfg.RESUME:
                log("critic: CRITIC_MODEL's layers under a new value head, started at zero")
        if cfg.GRADIENT_CHECKPOINTING:
            for model in filter(None, [self.policy, self.critic and self.critic.model]):
                enable_gradient_checkpointing(model)
        if cfg.RESUME:  # the checkpoint's weights, into the whole models
            self.load_weights(self.resume_from)
        # The sampler's copy of the policy in DTYPE (ROLLOUT_COPY), refreshed after each update;
        # else the sampler runs the policy itself.
        self.rollout_copy = rollout_copy_on(cfg, self.dtype, self.sharded)
        self.rollout_policy = dtype_copy(self.policy, self.dtype) if self.rollout_copy else \
            self.policy
        shard_reward = None
        if self.sharded:
            from torch.distributed.device_mesh import init_device_mesh
            mesh = init_device_mesh(dev["policy"].type, (self.ranks.world,))
            # Policy, reference and critic compute in DTYPE over float32 shards, as autocast does
            # without sharding; the critic is sharded whole (ValueModel), since it calls its
            # backbone and head itself.
            compute = self.dtype if self.dtype != torch.float32 else None
            for model in filter(None, (self.policy, self.ref_policy, self.critic)):
                shard_model(model, mesh, compute)
            shard_reward = partial(shard_model, mesh=mesh)  # stored in DTYPE already
        self.scorer = Scorer(cfg.REWARD_MODEL, cfg.REWARD_WEIGHTS, dev["reward"], self.dtype,
                             shard_reward, cfg.REWARD_LABEL)
        # Sampling stops when every rank's rows have ended: a sharded model's forwards are
        # collectives.
        self.all_done = (
            lambda finished: self.ranks.all(bool(finished.all()))) if self.sharded else None

