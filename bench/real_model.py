"""A real pretrained model on this CPU: SmolLM2-135M-Instruct learning chat-form two-digit addition
(configs/smollm2_addition_{grpo,ppo}.py) with our GRPO and PPO, beside TRL's GRPOTrainer on the same
model, data, reward, learning rate, group size and steps. Run each command alone: the times are
whole-process seconds.

    python -m tasks.smollm2                            # the model, once
    python bench/real_model.py run [--algorithms grpo ppo] [--seeds 0 1 2] [--rates 1e-5 3e-6]
    python bench/real_model.py trl [--seeds 0 1 2] [--rate 1e-5]   # needs trl==1.16.0
    python bench/real_model.py evaluate    # the base model and every final policy, by evaluate.py
    python bench/real_model.py report      # the table of docs/benchmarks.md and docs/real_model.png

A run without --rates uses the default learning rate (LEARNING_RATE=None). Held-out accuracy is
read by evaluate.py, which samples every policy on the same random numbers (200 held-out problems
x 2 answers, temperature 1, 12 new tokens), so each gain over the base model has its z-score.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(HERE, "runs", "real-model")
BASE = os.path.join(HERE, ".cache", "smollm2-135m-instruct")


def timed(cmd, out):
    t0 = time.time()
    with open(out + ".log", "w") as log:
        subprocess.run(cmd, cwd=HERE, check=True, stdout=log, stderr=subprocess.STDOUT)
    with open(os.path.join(out, "wall.json"), "w") as f:
        json.dump({"seconds": time.time() - t0}, f)
    print(f"{os.path.basename(out)}: {time.time() - t0:.0f} s", flush=True)


def run(algorithms, seeds, rates):
    for algorithm in algorithms:
        for rate in rates:
            for seed in seeds:
                name = f"{algorithm}-lr{'default' if rate is None else f'{rate:g}'}-seed{seed}"
                out = os.path.join(OUT, name)
                if os.path.exists(os.path.join(out, "wall.json")):
                    continue
                lr = [] if rate is None else [f"--LEARNING_RATE={rate}"]
                timed([sys.executable, "ppo.py", f"configs/smollm2_addition_{algorithm}.py", *lr,
                       f"--SEED={seed}", f"--OUTPUT_DIR={out}", "--OVERWRITE=True",
                       "--PLOT_EVERY=1000"], out)


def trl(seeds, rate):
    for seed in seeds:
        out = os.path.join(OUT, f"trl-grpo-lr{rate:g}-seed{seed}")
        if not os.path.exists(os.path.join(out, "wall.json")):
            os.makedirs(out, exist_ok=True)
            timed([sys.executable, "bench/trl_runner.py", "addition", out, str(seed), str(rate)],
                  out)


def policies():
    return sorted(glob.glob(os.path.join(OUT, "*", "policy")))


def evaluate():
    """evaluate.py over the base model and every final policy not evaluated yet: the same prompts
    and random numbers for every policy (a policy's answers depend on its weights alone, so the
    rows of separate calls compare), kept in evaluate.json."""
    path = os.path.join(OUT, "evaluate.json")
    rows = json.load(open(path)) if os.path.exists(path) else []
    done = {os.path.abspath(r["policy"]) for r in rows}
    folders = [p for p in [BASE, *policies()] if os.path.abspath(p) not in done]
    if not folders:
        return
    cmd = [sys.executable, "evaluate.py", *folders, "configs/smollm2_addition_grpo.py",
           "--DATASET=data/addition_chat_eval.jsonl", "--EVAL_SAMPLES=2"]
    text = subprocess.run(cmd, cwd=HERE, check=True, capture_output=True, text=True).stdout
    print(text)
    rows += json.loads(text.strip().splitlines()[-1])
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)


def held_out():
    """{run name: (accuracy, its standard error)} from evaluate.json."""
    with open(os.path.join(OUT, "evaluate.json")) as f:
        rows = json.load(f)

    def name(path):
        path = os.path.abspath(path)
        return "base" if path == BASE else os.path.basename(os.path.dirname(path))
    return {name(r["policy"]): (r["mean"], r["stderr"]) for r in rows}


def seconds(name):
    with open(os.path.join(OUT, name, "wall.json")) as f:
        return json.load(f)["seconds"]


def evaluation_seconds(name):
    """The seconds a run of ours spent evaluating itself (TRL's runs do not): the whole-process
    time less these is the time that compares with TRL's."""
    if name.startswith("trl"):
        return 0.0
    with open(os.path.join(OUT, name, "metrics.jsonl")) as f:
        return sum(r.get("time_eval", 0.0) for r in map(json.loads, f))


def training_rewards(name):
    """The training reward per step: ours from metrics.jsonl, TRL's from its log_history."""
    if name.startswith("trl"):
        with open(os.path.join(OUT, name, "trl_log.json")) as f:
            return [r["reward"] for r in json.load(f)["log_history"] if "reward" in r]
    with open(os.path.join(OUT, name, "metrics.jsonl")) as f:
        return [r["reward"] for r in map(json.loads, f) if "reward" in r]


def report():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    scores = held_out()
    base, base_se = scores.pop("base")
    groups = {}
    for name in scores:
        groups.setdefault(name.rsplit("-seed", 1)[0], []).append(name)
    print(f"base model: {base:.3f} +- {base_se:.3f}\n")
    print("| run | held-out accuracy per seed | mean gain | s.e. (sampling / seeds) | z | "
          "whole-process s | less evaluation |")
    print("|---|---|---|---|---|---|---|")
    fig, (ax_r, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (group, names) in enumerate(sorted(groups.items())):
        acc = np.array([scores[n][0] for n in names])
        se = np.sqrt(sum(scores[n][1] ** 2 for n in names)) / len(names)
        gain = acc.mean() - base
        z = gain / np.hypot(se, base_se)
        seeds_se = acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else float("nan")
        wall = np.mean([seconds(n) for n in names])
        train = np.mean([seconds(n) - evaluation_seconds(n) for n in names])
        print(f"| {group} | {' / '.join(f'{a:.3f}' for a in acc)} | {gain:+.3f} | "
              f"{np.hypot(se, base_se):.3f} / {seeds_se:.3f} | {z:.1f} | {wall:.0f} | "
              f"{train:.0f} |")
        curves = [training_rewards(n) for n in names]
        n = min(map(len, curves))
        ax_r.plot(np.mean([c[:n] for c in curves], 0), label=group)
        ax_a.bar(i, acc.mean(), yerr=se, label=group)
    ax_a.axhline(base, color="k", ls="--", lw=1, label="base model")
    ax_r.set(xlabel="step", ylabel="training reward (mean over seeds)",
             title="SmolLM2-135M-Instruct, chat-form addition")
    ax_a.set(ylabel="held-out accuracy (200 problems x 2)", xticks=[],
             title="after training (mean over seeds)")
    ax_a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "docs", "real_model.png"), dpi=110)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "trl", "evaluate", "report"))
    p.add_argument("--algorithms", nargs="+", default=["grpo", "ppo"], choices=["grpo", "ppo"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rates", nargs="+", type=float, default=[None])
    p.add_argument("--rate", type=float, default=1e-5, help="TRL's learning rate")
    a = p.parse_args(argv)
    if a.command == "run":
        run(a.algorithms, a.seeds, a.rates)
    elif a.command == "trl":
        trl(a.seeds, a.rate)
    elif a.command == "evaluate":
        evaluate()
    else:
        report()


if __name__ == "__main__":
    main(sys.argv[1:])
