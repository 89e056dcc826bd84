"""Independent evaluation of saved policies: fresh samples on a prompt set, scored by a reward model
or function.

    python evaluate.py .cache/tiny-qwen3-sft runs/ppo/policy --DATASET=data/eval_prompts.jsonl

Prints, per policy, the mean score with its standard error, and for each later policy the gain over
the first with a z-score (|z| > 3: the difference is far outside sampling noise). Settings come from
config.py and the same config files and --NAME=value overrides as ppo.py (REWARD_MODEL and
REWARD_WEIGHTS, DATASET, PROMPT_KEY, SYSTEM_PROMPT, MAX_NEW_TOKENS, TEMPERATURE, SEED,
DEVICE_POLICY, DEVICE_REWARD, DTYPE, CHAT_TEMPLATE, EVAL_SAMPLES). Reward functions receive the
dataset's other columns, as in training. ppo.py evaluates during training (EVAL_DATASET) with the
same sample_and_score (machinery/sampling.py); this script reloads saved folders with
from_pretrained, exactly as a user would, to compare several policies on the same random numbers.
"""
import json
import math
import os
import sys

import torch

from machinery import script
from machinery.data import as_seen, load_prompts, tokenize_prompts
from machinery.models import (check_causal_lm, load_causal_lm, load_tokenizer, resolve_devices,
                              resolve_dtype)
from machinery.rewards import RewardError, Scorer, check_scorers
from machinery.run_files import quiet_progress_bars
from machinery.sampling import eos_token_ids, sample_and_score
from machinery.script import Refusal
from machinery.settings import (config_files, given_settings, is_config_file, load_config,
                                setting_kinds)
from ppo import TABLES


def evaluate_policy(path, cfg, prompts, columns, scorer, devices, dtype):
    """sample_and_score on the policy saved at path, loaded with from_pretrained as a user would."""
    tok = load_tokenizer(path, "policy")
    # every prompt through the chat template before the weights load
    ids, _ = tokenize_prompts(tok, prompts, cfg.CHAT_TEMPLATE, cfg.MAX_PROMPT_LENGTH,
                              cfg.SYSTEM_PROMPT, cfg.ENABLE_THINKING,
                              source=f"DATASET={cfg.DATASET!r}, column {cfg.PROMPT_KEY!r}")
    model = load_causal_lm(path, devices["policy"], dtype)
    eos_ids = eos_token_ids(tok, path).to(devices["policy"])
    return sample_and_score(model, tok, eos_ids, ids, prompts, columns, scorer, cfg,
                            devices["policy"], dtype)


# The settings this script reads; any other given on the command line is refused (it would do
# nothing), and those a config file sets are named in one line.
READS = ("REWARD_MODEL", "REWARD_WEIGHTS", "REWARD_LABEL", "DATASET", "DATASET_CONFIG",
         "DATASET_SPLIT", "PROMPT_KEY", "SYSTEM_PROMPT", "CHAT_TEMPLATE", "ENABLE_THINKING",
         "MAX_PROMPT_LENGTH", "MAX_NEW_TOKENS", "TEMPERATURE", "SEED", "EVAL_SAMPLES",
         "DEVICE_POLICY", "DEVICE_REWARD", "DTYPE", "DEBUG")
# what to give instead, for the settings a user is likely to mean
INSTEAD = {"EVAL_DATASET": "DATASET", "EVAL_SPLIT": "DATASET_SPLIT",
           "ACTOR_MODEL": "the policy folders as arguments"}


def unread_settings(argv):
    """Refuses, in one line, a --NAME=value this script does not read (naming what to use instead);
    returns the line that names what the config files set and it does not read, or None."""
    from_files, from_command_line = given_settings(argv, setting_kinds(TABLES))
    for name, value in from_command_line.items():
        if name not in READS:
            instead = INSTEAD.get(name)
            hint = (f"give --{instead}={value!r}" if instead and instead.isupper() else
                    f"give {instead}" if instead else
                    f"it reads {', '.join(READS[:-1])} and DEBUG")
            raise Refusal(
                f"--{name} is not read by evaluate.py, which scores the policies it is given on "
                f"the prompts of DATASET: {hint}.")
    unread = [name for name in from_files if name not in READS]
    if not unread:
        return None
    line = (f"notice: evaluate.py does not read {', '.join(unread)} from the config file"
            f"{'s' if len(config_files(argv)) > 1 else ''}")
    if "EVAL_DATASET" in unread and "DATASET" not in from_command_line:
        line += (f"; it scores DATASET, not EVAL_DATASET={from_files['EVAL_DATASET']!r}: give "
                 f"--DATASET={from_files['EVAL_DATASET']!r} to score the held-out prompts")
    return line


def summary(scores):
    n = len(scores)
    return scores.mean().item(), scores.std().item() / math.sqrt(n), n


def main(argv):
    paths = [a for a in argv if not a.startswith("-") and not is_config_file(a)]
    if not paths:
        print(
            "error: no policy folder given; usage: python evaluate.py POLICY_DIR [POLICY_DIR ...] "
            "[CONFIG.py] [--NAME=value ...]", file=sys.stderr)
        return 2
    try:
        settings = [a for a in argv if a not in paths]
        notice = unread_settings(settings)
        # a config file's RESUME is ppo.py's: evaluation reads no checkpoint
        cfg = load_config(settings + ["--RESUME=False"], TABLES)
        quiet_progress_bars()
        if notice:
            print(notice)
        for path in paths:
            run_folder = os.path.exists(os.path.join(path, "metrics.jsonl"))
            if run_folder and os.path.isdir(os.path.join(path, "policy")):
                raise Refusal(f"{path!r} is a run's folder: give its trained policy, "
                                            f"{os.path.join(path, 'policy')!r}")
            check_causal_lm("policy", path)
        prompts, columns = load_prompts(cfg)
        prompts = [as_seen(p, cfg.SYSTEM_PROMPT) for p in prompts]
        # the policies are given: ACTOR_MODEL is not evaluation's
        check_scorers(cfg, prompts, columns)
        devices = resolve_devices(cfg, torch.cuda.device_count())
        dtype = resolve_dtype(cfg.DTYPE, devices["policy"])
        scorer = Scorer(cfg.REWARD_MODEL, cfg.REWARD_WEIGHTS, devices["reward"], dtype,
                        label=cfg.REWARD_LABEL)
        results = []
        print(f"{len(prompts)} prompts from {cfg.DATASET} x {cfg.EVAL_SAMPLES} samples, scored by "
              f"{cfg.REWARD_MODEL}")
        for path in paths:
            scores, parts, lengths, examples = evaluate_policy(
                path, cfg, prompts, columns, scorer, devices, dtype)
            results.append(report(path, scores, parts, lengths, examples, scorer.names, results))
    except Refusal as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RewardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    # a fault while loading or sampling: one line, the traceback with --DEBUG=True
    except Exception as e:
        if script.debug_requested(argv):
            raise
        print(f"error: evaluation failed: {type(e).__name__}: {script.first_line(e)}",
              file=sys.stderr)
        return 1
    print(json.dumps([{k: v for k, v in r.items() if k != "examples"} for r in results]))
    return 0


def report(path, scores, parts, lengths, examples, names, results):
    """One policy's line (with the gain over the first policy of `results`, and each scorer's mean
    when there are several) and its row."""
    mean, se, n = summary(scores)
    row = {"policy": path, "mean": mean, "stderr": se, "n": n,
           "length": lengths.float().mean().item(),
           "examples": examples[:3]}
    if len(names) > 1:
        row["scorers"] = dict(zip(names, parts.mean(0).tolist()))
    line = f"{path}: reward {mean:+.4f} +- {se:.4f} (n={n}), {row['length']:.1f} tokens"
    if results:
        base = results[0]
        gain = mean - base["mean"]
        z = gain / math.sqrt(se ** 2 + base["stderr"] ** 2 + 1e-12)
        row.update(gain=gain, z=z)
        line += f"   gain over {base['policy']}: {gain:+.4f} (z = {z:.1f})"
    if len(names) > 1:
        line += "   " + ", ".join(f"{k} {v:+.4f}" for k, v in row["scorers"].items())
    print(line)
    for ex in examples[:3]:
        print(f"    [{ex['reward']:+.3f}] {ex['prompt']!r} -> {ex['response']!r}")
    return row


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
