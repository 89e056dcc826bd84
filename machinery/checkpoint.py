"""Checkpoints and the final folders, as methods PPOTrainer inherits: everything a step changes
(weights, optimiser and scheduler states, counters, every random state) saved atomically and
restored exactly, gathered whole from FSDP2 shards so that a checkpoint resumes on any number of
processes."""
import json
import os
import random
import shutil

import numpy as np
import torch

from .distributed import full_state_dict, load_optimizer_state, optimizer_state
from .models import RewardModel, ValueModel, add_lora, load_causal_lm, load_trained_weights
from .preflight import load_trainer_state
from .run import SaveError, write_folder

# the repository: ppo.py's folder
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Checkpoints:
    """Saving and restoring a PPOTrainer (self.policy, self.critic, self.optimizers, ...)."""
    COUNTERS = ("step_count", "data_position", "responses_generated", "skipped_updates",
                "skipped_in_a_row")

    def light_state(self):
        """Counters, the KL coefficient and every random state: what a step changes besides weights
        and optimisers. Tensors and plain values only (NumPy's state as a tensor), so the checkpoint
        loads with weights_only=True."""
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        return {"counters": {k: getattr(self, k) for k in self.COUNTERS},
                "kl_coef": self.kl_ctl.value,
                "rng": {"python": random.getstate(), "torch": torch.get_rng_state(),
                        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                                  "pos": pos,
                                  "has_gauss": has_gauss, "gauss": gauss},
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                            else None}}

    def restore_light_state(self, state):
        for k, v in state["counters"].items():
            setattr(self, k, v)
        self.kl_ctl.value = state["kl_coef"]
        random.setstate(state["rng"]["python"])
        s = state["rng"]["numpy"]
        np.random.set_state((s["kind"], s["keys"].numpy().astype(np.uint32), s["pos"],
                             s["has_gauss"], s["gauss"]))
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def models(self):
        """Every model the run loaded, by role (the reward models by their metric names)."""
        scorers = {f"reward model {n}": p.model for n,
                   p in zip(self.scorer.names, self.scorer.parts)
                   if isinstance(p, RewardModel)}
        return {k: v for k, v in {"policy": self.policy, "reference": self.ref_policy,
                                  "critic": self.critic,
                                  **scorers}.items() if v is not None}

    def trained_models(self):
        """{"policy": ..., "critic": ...}: the modules whose weights a checkpoint and the final
        folders hold."""
        return {"policy": self.policy, **({"critic": self.critic.model} if self.critic is not None
                                          else {})}

    def optimized(self):
        """(model, optimizer) pairs: the policy's, then the critic's, in the order of
        self.optimizers."""
        return list(zip(filter(None, (self.policy, self.critic)), self.optimizers, strict=True))

    def save_checkpoint(self):
        """Everything needed to continue exactly, written atomically (write_folder) by rank 0: a
        kill at any instant, or a full disk, leaves the previous checkpoint whole. Sharded models
        and their optimiser states are gathered whole onto rank 0's CPU first (every rank takes
        part), so a checkpoint is the same whatever the sharding and resumes with or without it, on
        any number of processes; a failure to write then stops every rank."""
        keep, models = self.ranks.writes, self.trained_models()
        weights = {name: full_state_dict(m, keep) if self.sharded else None for name,
                   m in models.items()}
        optimizers = [optimizer_state(model, optimizer) for model, optimizer in self.optimized()]

        def write(tmp):
            for name, model in models.items():  # state_dict None: the model's own (whole) weights
                model.save_pretrained(os.path.join(tmp, name), state_dict=weights[name])
            self.tokenizer.save_pretrained(os.path.join(tmp, "policy"))
            with open(os.path.join(tmp, "settings.json"), "w") as f:
                json.dump(vars(self.cfg), f, indent=2)
            # the prompts it was trained on (check_same_data)
            with open(os.path.join(tmp, "data.json"), "w") as f:
                json.dump(self.data_fingerprint, f)
            torch.save({**self.light_state(), "optimizers": optimizers,
                        "schedulers": [s.state_dict() for s in self.schedulers]},
                        os.path.join(tmp, "trainer_state.pt"))

        error = None
        if keep:
            try:
                write_folder(os.path.join(self.cfg.OUTPUT_DIR, "checkpoint"), write)
            except SaveError as e:
                error = e
        if self.sharded:  # the other ranks hold no copy to fall back on: all stop, as rank 0 does
            message = self.ranks.first_object(str(error) if error else None)
            error = error or (SaveError(message) if message else None)
        if error:
            raise error
        self.saved_step = self.step_count

    def load_weights(self, path):
        """The checkpoint's weights, loaded into the (still whole) trained models."""
        for name, model in self.trained_models().items():
            load_trained_weights(model, os.path.join(path, name))

    def load_training_state(self, path):
        """The checkpoint's optimiser and scheduler states, counters and random states (after
        load_weights)."""
        # Memory-mapped when sharded: the processes of a node share one copy while each takes its
        # shards.
        state = load_trainer_state(os.path.join(path, "trainer_state.pt"), mmap=self.sharded)
        for (model, optimizer), saved in zip(self.optimized(), state["optimizers"]):
            load_optimizer_state(model, optimizer, saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
        self.restore_light_state(state)  # last: loading models may draw random numbers
        self.saved_step = self.step_count
        self.log(f"resuming from {path} after step {self.step_count - 1}")

    def save(self):
        """The final policy (and critic) as plain transformers folders; LoRA adapters are merged in
        first, so the folders load with from_pretrained like any checkpoint (this ends training: the
        models are unwrapped). Sharded models are gathered whole onto rank 0's CPU (every rank takes
        part); with LoRA rank 0 rebuilds them there from their folders to merge."""
        cfg, keep, models = self.cfg, self.ranks.writes, self.trained_models()
        weights = {name: full_state_dict(m, keep) if self.sharded else None for name,
                   m in models.items()}
        if not keep:
            return
        if cfg.LORA_RANK:
            if self.sharded:  # whole copies on the CPU, with the gathered weights
                models["policy"] = add_lora(load_causal_lm(cfg.ACTOR_MODEL, "cpu", self.dtype), cfg,
                                            "CAUSAL_LM")
                if self.critic is not None:
                    models["critic"] = ValueModel(cfg.CRITIC_MODEL, "cpu", self.dtype, cfg).model
                for name, model in models.items():
                    model.load_state_dict(weights.pop(name))
            models = {name: model.merge_and_unload() for name, model in models.items()}
        for name, model in models.items():  # each folder replaced atomically, like the checkpoint
            write_folder(os.path.join(cfg.OUTPUT_DIR, name), lambda tmp, model=model, name=name: (
                model.save_pretrained(tmp, state_dict=weights.get(name)),
                self.tokenizer.save_pretrained(tmp)))
        for name in ("ppo.py", "config.py"):  # the code behind these weights
            shutil.copy(os.path.join(HERE, name), os.path.join(cfg.OUTPUT_DIR, name))
        for name in ("machinery", "tasks"):
            write_folder(os.path.join(cfg.OUTPUT_DIR, name), lambda tmp, name=name: shutil.copytree(
                os.path.join(HERE, name), tmp, ignore=shutil.ignore_patterns("__pycache__")))
