"""Checkpoints: everything a step changes (weights, optimiser and scheduler states, counters, every
random state) saved atomically and restored exactly, gathered whole from FSDP2 shards so that a
checkpoint resumes on any number of processes; a checkpoint checked whole before a resume; the final
policy and critic folders."""
import json
import os
import random
import shutil

import numpy as np
import torch

from .distributed import full_state_dict, load_optimizer_state, optimizer_state
from .models import ValueModel, add_lora, load_causal_lm, load_trained_weights, weights_problem
from .run_files import SaveError, write_folder
from .script import Refusal, first_line

# the repository: ppo.py's folder
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# .prev: a kill fell between save_checkpoint's two renames
CHECKPOINTS = ("checkpoint", "checkpoint.prev")


def load_trainer_state(path, mmap=False):
    """trainer_state.pt holds tensors and plain values only, so it is read with weights_only=True: a
    checkpoint from someone else cannot run code through pickle (as HF's Trainer closed for its RNG
    states). mmap=True reads the tensors lazily (the check of a checkpoint before loading)."""
    import pickle
    try:
        return torch.load(path, weights_only=True, mmap=mmap, map_location="cpu")
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Weights only" in str(e):
            raise Refusal(
                f"{path} holds Python objects besides tensors and plain values, which could run "
                "code when read; this trainer does not unpickle them. Use a checkpoint this "
                "version wrote.") from None
        raise


def checkpoint_problem(path, algorithms):
    """What is damaged or missing in a checkpoint folder, named by file, or None: every JSON file in
    it parsed, trainer_state.pt read memory-mapped (cheap at any size), every weights file's header
    read, and the model folders there that the ALGORITHM its settings.json names trains (policy, and
    critic for an algorithm with one: `algorithms`, ppo.ALGORITHMS)."""
    settings_path = os.path.join(path, "settings.json")
    if not os.path.exists(settings_path):
        return f"{settings_path} is missing"
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(n for n in files if n.endswith(".json")):
            try:
                with open(os.path.join(root, name)) as f:
                    found = json.load(f)
            except (OSError, ValueError) as e:
                return f"{os.path.join(root, name)} is damaged ({first_line(e)[:120]})"
            if name == "settings.json" and root == path and not isinstance(found, dict):
                return f"{settings_path} is damaged (not a JSON object)"
    with open(settings_path) as f:
        algorithm = algorithms.get(json.load(f).get("ALGORITHM"))
    trained = ["policy"] + (["critic"] if algorithm is None or algorithm.critic else [])
    for name in ("trainer_state.pt", *(f"{m}/" for m in trained)):
        if not os.path.exists(os.path.join(path, name)):
            return f"{os.path.join(path, name)} is missing"
    state_path = os.path.join(path, "trainer_state.pt")
    try:
        # a pickle of more than data: the refusal says why
        state = load_trainer_state(state_path, mmap=True)
        missing = {"counters", "rng", "optimizers", "schedulers"} - set(state)
        if missing:
            return f"{state_path} is damaged (no {', '.join(sorted(missing))})"
    except Refusal:
        raise
    except Exception as e:
        return f"{state_path} is damaged ({(first_line(e) or type(e).__name__)[:120]})"
    for model in trained:
        folder = os.path.join(path, model)
        adapters = os.path.exists(os.path.join(folder, "adapter_config.json"))
        if not adapters and not os.path.exists(os.path.join(folder, "config.json")):
            return f"{os.path.join(folder, 'config.json')} is missing"
        problem = weights_problem(folder)
        if problem:
            return f"{folder}/: {problem}"
    return None


def resume_checkpoint(out, algorithms, log=print):
    """The checkpoint a RESUME=True run in `out` continues from, checked whole (checkpoint_problem):
    `checkpoint`, else a whole `checkpoint.prev` (a kill fell between a save's two renames, or the
    newer one is damaged), said in one line. Refused in one line when there is none."""
    found = [os.path.join(out, name) for name in CHECKPOINTS
             if os.path.isdir(os.path.join(out, name))]
    if not found:
        metrics = os.path.join(out, "metrics.jsonl")
        if os.path.exists(metrics) and os.path.getsize(metrics) > 0:
            raise Refusal(
                f"RESUME=True but the run in OUTPUT_DIR={out!r} stopped before its first "
                "checkpoint (one is written every SAVE_EVERY steps), so there is nothing to "
                "resume: start it again with --OVERWRITE=True, or choose another --OUTPUT_DIR.")
        raise Refusal(
            f"RESUME=True but OUTPUT_DIR={out!r} holds no checkpoint: start the run without "
            "--RESUME, or point OUTPUT_DIR at the run.")
    problems = []
    for path in found:
        problem = checkpoint_problem(path, algorithms)
        if problem is None:
            break
        problems.append(problem)
    else:
        raise Refusal(
            f"RESUME=True but {'; '.join(problems)}, and no other whole checkpoint is left: start "
            f"again with --OVERWRITE=True, or resume from a copy of the run.")
    if problems and log is not None:
        log(f"notice: {problems[0]}; resuming from {path} instead")
    return path


def saved_settings(checkpoint):
    """A checkpoint's settings.json: the settings of the run it continues."""
    with open(os.path.join(checkpoint, "settings.json")) as f:
        return json.load(f)


def check_output_dir(cfg, algorithms, log=print):
    """Refuse to mix two runs in one OUTPUT_DIR. When resuming, returns the checkpoint to resume
    from, whole (resume_checkpoint; load_config has checked its settings against the run's)."""
    out = cfg.OUTPUT_DIR
    if cfg.RESUME and cfg.OVERWRITE:
        raise Refusal("RESUME=True and OVERWRITE=True contradict each other: set one of them.")
    found = [os.path.join(out, name) for name in CHECKPOINTS
             if os.path.isdir(os.path.join(out, name))]
    metrics = os.path.join(out, "metrics.jsonl")
    logged = os.path.exists(metrics) and os.path.getsize(metrics) > 0
    if not cfg.RESUME:
        if cfg.OVERWRITE or not (found or logged):
            return None
        if found:
            raise Refusal(
                f"OUTPUT_DIR={out!r} already holds a run: continue it with --RESUME=True, replace "
                "it with --OVERWRITE=True, or choose another --OUTPUT_DIR.")
        raise Refusal(
            f"OUTPUT_DIR={out!r} holds the logs of a run that stopped before its first checkpoint, "
            "so it cannot be resumed: replace it with --OVERWRITE=True, or choose another "
            "--OUTPUT_DIR.")
    return resume_checkpoint(out, algorithms, None)  # load_config said which one


def random_states():
    """Every random state (Python's, NumPy's, torch's, CUDA's), as tensors and plain values only
    (NumPy's state as a tensor), so that a checkpoint loads with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "gauss": gauss},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_random_states(rng):
    random.setstate(rng["python"])
    s = rng["numpy"]
    np.random.set_state((s["kind"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"],
                         s["gauss"]))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None:
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_checkpoint(out_dir, models, optimized, schedulers, tokenizer, settings, fingerprint,
                    light_state, ranks, sharded):
    """OUT_DIR/checkpoint: everything needed to continue exactly, written atomically (write_folder)
    by rank 0, so a kill at any instant, or a full disk, leaves the previous checkpoint whole.
    models: {"policy": ..., "critic": ...}; optimized: (model, optimizer) pairs; light_state: the
    counters and random states. Sharded models and their optimiser states are gathered whole onto
    rank 0's CPU first (every rank takes part), so a checkpoint is the same whatever the sharding
    and resumes on any number of processes; a failure to write then stops every rank."""
    keep = ranks.writes
    weights = {name: full_state_dict(m, keep) if sharded else None for name, m in models.items()}
    optimizers = [optimizer_state(model, optimizer) for model, optimizer in optimized]

    def write(tmp):
        for name, model in models.items():  # state_dict None: the model's own (whole) weights
            model.save_pretrained(os.path.join(tmp, name), state_dict=weights[name])
        tokenizer.save_pretrained(os.path.join(tmp, "policy"))
        with open(os.path.join(tmp, "settings.json"), "w") as f:
            json.dump(settings, f, indent=2)
        with open(os.path.join(tmp, "data.json"), "w") as f:  # what it trained on (check_same_data)
            json.dump(fingerprint, f)
        torch.save({**light_state, "optimizers": optimizers,
                    "schedulers": [s.state_dict() for s in schedulers]},
                   os.path.join(tmp, "trainer_state.pt"))

    error = None
    if keep:
        try:
            write_folder(os.path.join(out_dir, "checkpoint"), write)
        except SaveError as e:
            error = e
    if sharded:  # the other ranks hold no copy to fall back on: all stop, as rank 0 does
        message = ranks.first_object(str(error) if error else None)
        error = error or (SaveError(message) if message else None)
    if error:
        raise error


def load_weights(path, models):
    """A checkpoint's weights, loaded into the (still whole) trained models {"policy": ...}."""
    for name, model in models.items():
        load_trained_weights(model, os.path.join(path, name))


def load_training_state(path, optimized, schedulers, sharded):
    """A checkpoint's optimiser and scheduler states, loaded (after load_weights); returns the rest
    of trainer_state.pt (counters, KL coefficient, random states). Memory-mapped when sharded: the
    processes of a node share one copy while each takes its shards."""
    state = load_trainer_state(os.path.join(path, "trainer_state.pt"), mmap=sharded)
    for (model, optimizer), saved in zip(optimized, state["optimizers"]):
        load_optimizer_state(model, optimizer, saved)
    for scheduler, saved in zip(schedulers, state["schedulers"]):
        scheduler.load_state_dict(saved)
    return state


def save_final(cfg, models, tokenizer, dtype, ranks, sharded):
    """The final policy (and critic) as plain transformers folders in OUTPUT_DIR; LoRA adapters are
    merged in first, so the folders load with from_pretrained like any checkpoint (this ends
    training: the models are unwrapped). Sharded models are gathered whole onto rank 0's CPU (every
    rank takes part); with LoRA rank 0 rebuilds them there from their folders to merge. The code
    behind the weights is copied beside them."""
    keep = ranks.writes
    weights = {name: full_state_dict(m, keep) if sharded else None for name, m in models.items()}
    if not keep:
        return
    if cfg.LORA_RANK:
        if sharded:  # whole copies on the CPU, with the gathered weights
            models["policy"] = add_lora(load_causal_lm(cfg.ACTOR_MODEL, "cpu", dtype), cfg,
                                        "CAUSAL_LM")
            if "critic" in models:
                models["critic"] = ValueModel(cfg.CRITIC_MODEL, "cpu", dtype, cfg).model
            for name, model in models.items():
                model.load_state_dict(weights.pop(name))
        models = {name: model.merge_and_unload() for name, model in models.items()}
    for name, model in models.items():  # each folder replaced atomically, like the checkpoint
        write_folder(os.path.join(cfg.OUTPUT_DIR, name), lambda tmp, model=model, name=name: (
            model.save_pretrained(tmp, state_dict=weights.get(name)),
            tokenizer.save_pretrained(tmp)))
    for name in ("ppo.py", "config.py"):  # the code behind these weights
        shutil.copy(os.path.join(HERE, name), os.path.join(cfg.OUTPUT_DIR, name))
    for name in ("machinery", "tasks"):
        write_folder(os.path.join(cfg.OUTPUT_DIR, name), lambda tmp, name=name: shutil.copytree(
            os.path.join(HERE, name), tmp, ignore=shutil.ignore_patterns("__pycache__")))


def seed_everything(seed):
    """Python's, NumPy's and torch's random states from one seed (SEED)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
