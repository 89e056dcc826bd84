"""Independent evaluation of saved policies: fresh samples on a prompt set, scored by a reward model or function.

    python evaluate.py .cache/tiny-qwen3-sft runs/ppo/policy --DATASET=data/eval_prompts.jsonl

Prints, per policy, the mean score with its standard error, and for each later policy the gain over the first
with a z-score (|z| > 3: the difference is far outside sampling noise). Settings come from config.py and the
same --NAME=value overrides as ppo.py (REWARD_MODEL, DATASET, PROMPT_KEY, MAX_NEW_TOKENS, TEMPERATURE, SEED,
DEVICE_POLICY, DEVICE_REWARD, DTYPE, CHAT_TEMPLATE, EVAL_SAMPLES). It exists apart from ppo.py because a
training metric is measured on the prompts being trained on, by the process doing the training; this reloads the
saved folder with from_pretrained, exactly as a user would.
"""
import json
import math
import sys

import torch

import ppo
import preflight


@torch.inference_mode()
def evaluate_policy(path, cfg, prompts, scorer, devices, dtype, batch_size=64):
    """Scores of EVAL_SAMPLES responses per prompt from the policy saved at path. Returns (scores, response lengths
    in tokens, EOS included, examples)."""
    tok = ppo.load_tokenizer(path, "policy")
    model = ppo.load_causal_lm(path, devices["policy"], dtype)
    eos_ids = ppo.eos_token_ids(tok, path).to(devices["policy"])
    ids, _ = ppo.tokenize_prompts(tok, prompts, cfg.CHAT_TEMPLATE, cfg.MAX_PROMPT_LENGTH)
    order = [i for i in range(len(prompts)) for _ in range(cfg.EVAL_SAMPLES)]
    torch.manual_seed(cfg.SEED)  # every policy sees the same prompts with the same random stream
    scores, lengths, examples = [], [], []
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        input_ids, mask = ppo.left_pad([ids[i] for i in chunk], tok.pad_token_id)
        response, _ = ppo.sample(model, input_ids.to(devices["policy"]), mask.to(devices["policy"]),
                                 cfg.MAX_NEW_TOKENS, cfg.TEMPERATURE, eos_ids, tok.pad_token_id)
        texts = tok.batch_decode(response, skip_special_tokens=True)
        ended = torch.isin(response, eos_ids)  # (B, Tr)
        lengths.append(torch.where(ended.any(1), ended.int().argmax(1) + 1, response.shape[1]).cpu())
        chunk_prompts = [prompts[i] for i in chunk]
        chunk_scores = scorer(chunk_prompts, texts).cpu()
        scores.append(chunk_scores)
        examples += [{"prompt": p, "response": r, "reward": s} for p, r, s in
                     zip(chunk_prompts, texts, chunk_scores.tolist())]
    return torch.cat(scores), torch.cat(lengths), examples


def summary(scores):
    n = len(scores)
    return scores.mean().item(), scores.std().item() / math.sqrt(n), n


def main(argv):
    paths = [a for a in argv if not a.startswith("--")]
    if not paths:
        print("usage: python evaluate.py POLICY_DIR [POLICY_DIR ...] [--NAME=value ...]", file=sys.stderr)
        return 2
    ppo.quiet_progress_bars()
    try:
        cfg = ppo.load_config([a for a in argv if a.startswith("--")])
        for path in paths:
            preflight.load_model_config("policy", path)
        prompts = ppo.load_prompts(cfg)
        devices = ppo.resolve_devices(cfg, torch.cuda.device_count())
        dtype = ppo.resolve_dtype(cfg.DTYPE, devices["policy"])
        scorer = ppo.load_scorer(cfg.REWARD_MODEL, devices["reward"], dtype)
    except ppo.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(prompts)} prompts from {cfg.DATASET} x {cfg.EVAL_SAMPLES} samples, scored by {cfg.REWARD_MODEL}")
    results = []
    for path in paths:
        scores, lengths, examples = evaluate_policy(path, cfg, prompts, scorer, devices, dtype)
        mean, se, n = summary(scores)
        results.append({"policy": path, "mean": mean, "stderr": se, "n": n, "length": lengths.float().mean().item(),
                        "examples": examples[:3]})
        line = f"{path}: reward {mean:+.4f} +- {se:.4f} (n={n}), {results[-1]['length']:.1f} tokens"
        if results[0] is not results[-1]:
            base = results[0]
            gain = mean - base["mean"]
            z = gain / math.sqrt(se ** 2 + base["stderr"] ** 2 + 1e-12)
            results[-1].update(gain=gain, z=z)
            line += f"   gain over {base['policy']}: {gain:+.4f} (z = {z:.1f})"
        print(line)
        for ex in examples[:3]:
            print(f"    [{ex['reward']:+.3f}] {ex['prompt']!r} -> {ex['response']!r}")
    print(json.dumps([{k: v for k, v in r.items() if k != "examples"} for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
