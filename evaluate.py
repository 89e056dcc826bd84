"""Independent evaluation of saved policies: fresh samples on a prompt set, scored by a reward model or function.

    python evaluate.py .cache/tiny-qwen3-sft runs/ppo/policy --DATASET=data/eval_prompts.jsonl

Prints, per policy, the mean score with its standard error, and for each later policy the gain over the first
with a z-score (|z| > 3: the difference is far outside sampling noise). Settings come from config.py and the
same config files and --NAME=value overrides as ppo.py (REWARD_MODEL and REWARD_WEIGHTS, DATASET, PROMPT_KEY,
SYSTEM_PROMPT, MAX_NEW_TOKENS, TEMPERATURE, SEED, DEVICE_POLICY, DEVICE_REWARD, DTYPE, CHAT_TEMPLATE,
EVAL_SAMPLES). Reward functions receive the dataset's other columns, as in training. ppo.py evaluates during
training (EVAL_DATASET) with this file's sample_and_score; this script reloads saved folders with from_pretrained,
exactly as a user would, to compare several policies on the same random numbers.
"""
import json
import math
import os
import sys

import torch

import ppo
import preflight


EVAL_POSITION = 2 ** 62  # the random stream of evaluations: a prompt-stream position no training run reaches


def sample_and_score(model, tokenizer, eos_ids, prompt_ids, prompts, columns, scorer, cfg, device, dtype, rows=None,
                     all_done=None, batch_size=64):
    """EVAL_SAMPLES responses to each prompt, sampled and scored: the one implementation of evaluation, used here
    on saved policies and by ppo.py during training. Row r of the len(prompts) * EVAL_SAMPLES rows answers prompt
    r // EVAL_SAMPLES with random numbers fixed by (SEED, r), so successive evaluations of a changing policy use
    the same numbers and differ only by the policy, and the result does not depend on how rows are split into
    batches or processes. rows: the rows this process takes (default all); all_done: as for ppo.sample. Returns
    the (n,) rewards, the (n, scorers) scores they sum, the (n,) response lengths in tokens (EOS included) and the
    examples."""
    S = cfg.EVAL_SAMPLES
    n_rows = len(prompts) * S
    rows = list(range(n_rows) if rows is None else rows)
    scores, parts, lengths, examples = [], [], [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        index = [r // S for r in chunk]
        input_ids, mask = ppo.left_pad([prompt_ids[i] for i in index], tokenizer.pad_token_id)
        uniforms = ppo.uniforms_for(cfg.SEED, EVAL_POSITION, n_rows, chunk)
        with ppo.autocast(device, dtype):
            response, _ = ppo.sample(model, input_ids.to(device), mask.to(device), cfg.MAX_NEW_TOKENS,
                                     cfg.TEMPERATURE, eos_ids, tokenizer.pad_token_id, uniforms, all_done)
        texts = tokenizer.batch_decode(response, skip_special_tokens=True)
        ended = torch.isin(response, eos_ids)  # (B, Tr)
        lengths.append(torch.where(ended.any(1), ended.int().argmax(1) + 1, response.shape[1]).cpu())
        chunk_prompts = [prompts[i] for i in index]
        total, chunk_parts = scorer(chunk_prompts, texts, {k: [v[i] for i in index] for k, v in columns.items()})
        scores.append(total)
        parts.append(chunk_parts)
        examples += [{"prompt": p, "response": r, "reward": s} for p, r, s in
                     zip(chunk_prompts, texts, total.tolist())]
    if not scores:  # no rows for this process
        return torch.zeros(0), torch.zeros(0, len(scorer.names)), torch.zeros(0, dtype=torch.long), []
    return torch.cat(scores), torch.cat(parts), torch.cat(lengths), examples


def evaluate_policy(path, cfg, prompts, columns, scorer, devices, dtype):
    """sample_and_score on the policy saved at path, loaded with from_pretrained as a user would."""
    tok = ppo.load_tokenizer(path, "policy")
    model = ppo.load_causal_lm(path, devices["policy"], dtype)
    eos_ids = ppo.eos_token_ids(tok, path).to(devices["policy"])
    ids, _ = ppo.tokenize_prompts(tok, prompts, cfg.CHAT_TEMPLATE, cfg.MAX_PROMPT_LENGTH, cfg.SYSTEM_PROMPT,
                                  cfg.ENABLE_THINKING)
    return sample_and_score(model, tok, eos_ids, ids, prompts, columns, scorer, cfg, devices["policy"], dtype)


def summary(scores):
    n = len(scores)
    return scores.mean().item(), scores.std().item() / math.sqrt(n), n


def main(argv):
    paths = [a for a in argv if not a.startswith("--") and not preflight.is_config_file(a)]
    if not paths:
        print("error: no policy folder given; usage: python evaluate.py POLICY_DIR [POLICY_DIR ...] [CONFIG.py] "
              "[--NAME=value ...]", file=sys.stderr)
        return 2
    ppo.quiet_progress_bars()
    try:
        cfg = ppo.load_config([a for a in argv if a not in paths])
        for path in paths:
            if os.path.isdir(os.path.join(path, "policy")) and os.path.exists(os.path.join(path, "metrics.jsonl")):
                raise ppo.ConfigError(f"{path!r} is a run's folder: give its trained policy, "
                                      f"{os.path.join(path, 'policy')!r}")
            preflight.check_causal_lm("policy", path)
        prompts, columns = ppo.load_prompts(cfg)
        prompts = [ppo.as_seen(p, cfg.SYSTEM_PROMPT) for p in prompts]
        preflight.check_scorers(cfg, prompts, columns)  # the policies are given: ACTOR_MODEL is not evaluation's
        devices = ppo.resolve_devices(cfg, torch.cuda.device_count())
        dtype = ppo.resolve_dtype(cfg.DTYPE, devices["policy"])
        scorer = ppo.Scorer(cfg.REWARD_MODEL, cfg.REWARD_WEIGHTS, devices["reward"], dtype, label=cfg.REWARD_LABEL)
        results = []
        print(f"{len(prompts)} prompts from {cfg.DATASET} x {cfg.EVAL_SAMPLES} samples, scored by "
              f"{cfg.REWARD_MODEL}")
        for path in paths:
            scores, parts, lengths, examples = evaluate_policy(path, cfg, prompts, columns, scorer, devices, dtype)
            results.append(report(path, scores, parts, lengths, examples, scorer.names, results))
    except ppo.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except preflight.RewardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a fault while loading or sampling: one line, the traceback with --DEBUG=True
        if preflight.debug_requested(argv):
            raise
        print(f"error: evaluation failed: {type(e).__name__}: {preflight.first_line(e)}", file=sys.stderr)
        return 1
    print(json.dumps([{k: v for k, v in r.items() if k != "examples"} for r in results]))
    return 0


def report(path, scores, parts, lengths, examples, names, results):
    """One policy's line (with the gain over the first policy of `results`, and each scorer's mean when there
    are several) and its row."""
    mean, se, n = summary(scores)
    row = {"policy": path, "mean": mean, "stderr": se, "n": n, "length": lengths.float().mean().item(),
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
