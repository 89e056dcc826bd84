"""The verifiable-reward example measured: GRPO and PPO (and GSPO, CISPO on GRPO's config) on the
embedded arithmetic task, several seeds.

    # python ppo.py configs/arithmetic_{grpo,ppo}.py per seed
    python bench/arithmetic.py run [--seeds 0 1 2] [--algorithms grpo ppo gspo cispo]
    # the table of docs/benchmarks.md and docs/arithmetic.png
    python bench/arithmetic.py report

Each run evaluates itself on the 200 held-out problems (EVAL_DATASET in the configs): EVAL_SAMPLES
answers per problem at temperature 1, at step 0 (the SFT policy), every EVAL_EVERY steps and at the
end. Held-out accuracy is the mean exact-match reward, so the report reads it straight from each
run's metrics.jsonl.
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)  # machinery/, run as python bench/arithmetic.py
from machinery import script  # noqa: E402
OUT = os.path.join(HERE, "runs", "arithmetic")
ALGORITHMS = ("grpo", "ppo", "gspo", "cispo", "cispo_lr2.5e-4")
# each algorithm's config: GSPO and CISPO run GRPO's (the same model, data, batch and rate)
CONFIGS = {"grpo": ["configs/arithmetic_grpo.py"], "ppo": ["configs/arithmetic_ppo.py"],
           "gspo": ["configs/arithmetic_grpo.py", "--ALGORITHM=gspo"],
           "cispo": ["configs/arithmetic_grpo.py", "--ALGORITHM=cispo"],
           # GRPO's rate spread over CISPO's 4 updates per batch (at 1e-3 it collapsed)
           "cispo_lr2.5e-4": ["configs/arithmetic_grpo.py", "--ALGORITHM=cispo",
                              "--LEARNING_RATE=2.5e-4"]}


def run_dir(algorithm, seed):
    return os.path.join(OUT, f"{algorithm}-seed{seed}")


def run(seeds, algorithms):
    for seed in seeds:
        for algorithm in algorithms:
            out = run_dir(algorithm, seed)
            if os.path.exists(os.path.join(out, "policy", "config.json")):
                continue
            t0 = time.time()
            cmd = [sys.executable, "ppo.py", *CONFIGS[algorithm], f"--SEED={seed}",
                   f"--OUTPUT_DIR={out}", "--OVERWRITE=True", "--SAMPLE_EVERY=1000",
                   "--PLOT_EVERY=1000"]
            subprocess.run(cmd, cwd=HERE, check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(out, "wall.json"), "w") as f:
                json.dump({"seconds": time.time() - t0}, f)
            print(f"{algorithm} seed {seed}: {time.time() - t0:.0f} s", flush=True)


def evaluations(out):
    """(step, held-out accuracy, its s.e.) of each evaluation a run logged ([] for none)."""
    import plotting  # a half-written last line (a live run) is skipped
    path = os.path.join(out, "metrics.jsonl")
    rows = plotting.read_metrics(path) if os.path.isfile(path) else []
    return [(r["step"], r["eval_reward"], r["eval_reward_se"]) for r in rows if "eval_reward" in r]


def report():
    runs = sorted(os.listdir(OUT)) if os.path.isdir(OUT) else []
    skipped = [name for name in runs if not evaluations(os.path.join(OUT, name))]
    for name in skipped:
        print(f"skipped: {os.path.join(OUT, name)} (no held-out evaluation in its metrics.jsonl)")
    if len(skipped) == len(runs):
        raise script.Refusal(f"no evaluated runs in {OUT}: python bench/arithmetic.py run first")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.subplots()
    lines = ["| algorithm | seed | held-out accuracy, step 0 | at the end | gain (z) | seconds |",
             "|---|---|---|---|---|---|"]
    colors = {"grpo": "tab:blue", "ppo": "tab:orange", "gspo": "tab:green", "cispo": "tab:red",
              "cispo_lr2.5e-4": "tab:purple"}
    for algorithm in ALGORITHMS:
        gains = []
        for name in sorted(os.listdir(OUT)):
            if not name.startswith(algorithm + "-seed") or name in skipped:
                continue
            out, seed = os.path.join(OUT, name), name.rsplit("seed", 1)[1]
            evals = evaluations(out)
            (_, before, se0), (_, after, se1) = evals[0], evals[-1]
            gains.append(after - before)
            with open(os.path.join(out, "wall.json")) as f:
                seconds = json.load(f)["seconds"]
            z = (after - before) / (se0 ** 2 + se1 ** 2) ** 0.5
            lines.append(
                f"| {algorithm} | {seed} | {before:.3f} ± {se0:.3f} | {after:.3f} ± {se1:.3f} | "
                f"{after - before:+.3f} ({z:.1f}) | {seconds:.0f} |")
            ax.plot([e[0] for e in evals], [e[1] for e in evals], color=colors[algorithm],
                    alpha=0.8, label=algorithm if len(gains) == 1 else None)
        if gains:
            mean = sum(gains) / len(gains)
            lines.append(f"| **{algorithm}** | mean of {len(gains)} | | | **{mean:+.3f}** | |")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out accuracy (exact match, T=1)")
    ax.set_title("two-digit addition: 200 held-out problems x 4 answers")
    ax.legend()
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.9)
    fig.savefig(os.path.join(HERE, "docs", "arithmetic.png"), dpi=100)
    print("\n".join(lines))


def main(argv=None):
    parser = script.ArgumentParser(prog="bench/arithmetic.py")
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algorithms", nargs="+", default=["grpo", "ppo"], choices=ALGORITHMS)
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.seeds, args.algorithms)
    else:
        report()


if __name__ == "__main__":
    sys.exit(script.run(main))
