"""PPO, GRPO, DAPO and REINFORCE on the same task, measured side by side, drawn and tabled.

    # the embedded default task, 3200 responses per algorithm
    python bench/compare.py
    # after --: for every run
    python bench/compare.py --responses=6400 --algorithms=ppo,grpo -- --LEARNING_RATE=1e-4

Each algorithm runs as its own `python ppo.py` process (so its wall time includes loading, as yours
would) with the same seed, 32 responses per step (PPO: 32 prompts x 1; the others: 8 prompts x
GROUP_SIZE 4), and stops once it has generated --responses responses (DAPO's dynamic sampling spends
part of them on groups it drops). Every run loads the reference model, so KL is measured even where
the algorithm does not use it. Then evaluate.py's independent evaluation scores each saved policy on
the held-out prompts. Writes runs/compare/compare.png and runs/compare/compare.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
sys.path.insert(0, HERE)  # run as python bench/compare.py
from machinery import script  # noqa: E402
import plotting  # noqa: E402
ALGORITHM_ARGS = {  # 32 responses per step for every algorithm
    "ppo": ["--BATCH_SIZE=32", "--GROUP_SIZE=1"],
    "grpo": ["--BATCH_SIZE=8", "--GROUP_SIZE=4"],
    "dapo": ["--BATCH_SIZE=8", "--GROUP_SIZE=4"],
    "reinforce": ["--BATCH_SIZE=8", "--GROUP_SIZE=4"],
    "gspo": ["--BATCH_SIZE=8", "--GROUP_SIZE=4"],
    "cispo": ["--BATCH_SIZE=8", "--GROUP_SIZE=4"],
}
DIFFERENCES = """| | critic | advantage | KL to the reference | clip | loss aggregation | updates per batch | sampling |
|---|---|---|---|---|---|---|---|
| ppo | yes (GAE, per token) | GAE, whitened over the batch | per-token penalty in the reward (k1, beta 0.05) | 0.2 / 0.2, value clip 0.2 | token mean | 4 passes over minibatches of 8 | 1 response per prompt |
| grpo | no | (r - group mean) / group std | k3 term in the loss (beta 0.04) | 0.2 / 0.2 | sequence mean of token means | one, on the whole batch | GROUP_SIZE per prompt |
| dapo | no | as GRPO | none | 0.2 / 0.28 (clip-higher) | token mean | one, on the whole batch | GROUP_SIZE per prompt; groups with equal rewards dropped and refilled; overlong shaping when OVERLONG_BUFFER is set |
| reinforce | no | r - mean of the other responses (leave-one-out) | penalty in the sequence reward (k1, beta 0.05) | none | sequence sum of log-probs | one, on the whole batch | GROUP_SIZE per prompt |
| gspo | no | as GRPO | none | 3e-4 / 4e-4 on each sequence's ratio (pi / pi_old)^(1/len) | sequence mean of token means | one pass over 4 minibatches | GROUP_SIZE per prompt |
| cispo | no | as GRPO | none | none on the update; the weight clip(r, 0, 1.28), without gradient, times A log pi | token mean | one pass over 4 minibatches | GROUP_SIZE per prompt |
"""


# The TRL comparison (--trl): our grpo, dapo and reinforce with the settings bench/trl_runner.py
# gives TRL's GRPOTrainer (loss_type "grpo", "dapo") and RLOOTrainer: 100 steps of 8 prompts x 4,
# one update per step. TRL's loss_type="dapo" has no overlong shaping, so ours runs without it too
# (its dynamic sampling stays on); TRL saves no checkpoint (save_strategy="no"), so ours writes only
# its end-of-run one.
TRL_PAIRS = {"grpo": "grpo", "dapo": "dapo", "reinforce": "rloo"}
TRL_MATCHED_ARGS = ["--BATCH_SIZE=8", "--GROUP_SIZE=4", "--MAX_STEPS=100", "--PPO_EPOCHS=1",
                    "--MINI_BATCH_SIZE=32",
                    "--MICRO_BATCH_SIZE=32", "--PLOT_EVERY=100000", "--OVERLONG_BUFFER=0",
                    "--SAVE_EVERY=100000"]


def last_error(stderr):
    """What a failed child said last: its error line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("error:")]
    return (said or lines or ["(no output)"])[-1]


def timed(cmd, what):
    """Runs a command; returns its whole-process wall time."""
    print(" ".join(cmd[1:]), flush=True)
    t0 = time.time()
    result = subprocess.run(cmd, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {last_error(result.stderr)}")
    return time.time() - t0


RUN_ARGS = ["--MAX_STEPS=None", "--NUM_EPOCHS=100000", "--ALWAYS_LOAD_REFERENCE=True",
            "--PLOT_EVERY=100000"]


def run_algorithm(algorithm, out_dir, responses, extra):
    return timed([sys.executable, os.path.join(HERE, "ppo.py"), f"--ALGORITHM={algorithm}",
                  f"--OUTPUT_DIR={out_dir}",
                  f"--MAX_RESPONSES={responses}", *RUN_ARGS, *ALGORITHM_ARGS[algorithm], *extra],
                  algorithm)


def check_arguments(args, extra, out_dirs):
    """Bad input is one line and exit 2 before anything is built or run, as for ppo.py: the
    algorithm names, the response budget, the settings after -- (read as ppo.py reads them), and the
    run folders, which must be new: this script never replaces a run (ppo.py's OVERWRITE is the
    user's to give)."""
    from machinery.script import Refusal
    from machinery.settings import load_config
    from ppo import TABLES
    try:
        unknown = [a for a in args.algorithms.split(",") if a not in ALGORITHM_ARGS]
        if unknown:
            raise Refusal(
                f"--algorithms={args.algorithms}: unknown {', '.join(map(repr, unknown))}; the "
                f"algorithms are {', '.join(ALGORITHM_ARGS)}")
        if args.responses < 1:
            raise Refusal(f"--responses must be at least 1, got {args.responses}")
        own = TRL_MATCHED_ARGS if args.trl else RUN_ARGS + ALGORITHM_ARGS["ppo"]
        taken = {a.split("=", 1)[0] for a in own + ["--ALGORITHM", "--OUTPUT_DIR",
                                                    "--MAX_RESPONSES"]
                 + (["--SEED"] if args.trl else [])}
        fixed = [a for a in extra if a.split("=", 1)[0] in taken]
        if fixed:
            raise Refusal(
                f"{fixed[0]}: bench/compare.py sets {fixed[0].split('=')[0]} itself, the same for "
                f"every run; leave it out")
        load_config(extra, TABLES)
        for path in out_dirs:
            if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
                raise Refusal(
                    f"{path} already exists: this script writes only new run folders; choose "
                    f"another --out, or remove it")
    except Refusal as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def compare_with_trl(trl_python, out, seeds):
    """Ours and TRL's counterpart for each pair and seed, run one after the other (never side by
    side: they would share the cores), then one independent evaluation of every saved policy.
    Reports the mean and spread over seeds: one seed's difference is mostly training noise."""
    import statistics

    from tasks import sentiment
    wall, policies = {}, [sentiment.POLICY_DIR]
    for seed in seeds:
        for ours, theirs in TRL_PAIRS.items():
            for name, cmd in ((f"ours-{ours}",
                               [sys.executable, os.path.join(HERE, "ppo.py"), f"--ALGORITHM={ours}",
                                                f"--SEED={seed}", *TRL_MATCHED_ARGS]),
                              (f"trl-{theirs}", [trl_python,
                                                 os.path.join(HERE, "bench", "trl_runner.py"),
                                                 theirs])):
                run_dir = os.path.join(out, f"{name}-seed{seed}")
                cmd = cmd + ([f"--OUTPUT_DIR={run_dir}"] if name.startswith("ours")
                             else [run_dir, str(seed)])
                wall[name, seed] = timed(cmd, name)
                policies.append(os.path.join(run_dir, "policy"))
    results = evaluate_all(policies, [])
    gains = {key: r["gain"] for key, r in zip(wall, results[1:])}
    base = results[0]

    def summary(name):
        g = [gains[name, s] for s in seeds]
        t = [wall[name, s] for s in seeds]
        spread = f" +- {statistics.stdev(g):.3f}" if len(g) > 1 else ""
        return f"{statistics.mean(g):+.3f}{spread}", statistics.mean(t)

    lines = [
        "Embedded default task, 100 steps of 8 prompts x 4 responses, one update per step, "
        f"learning rate 3e-4, seeds {', '.join(map(str, seeds))}; whole-process wall time on this "
        "machine, runs one after the other; held-out reward gain by evaluate.py over the initial "
        f"policy ({base['mean']:+.3f}), mean +- std over seeds.", "",
        "| ours | held-out gain | wall time (s) | TRL 1.16 | held-out gain | wall time (s) | "
        "time ratio (TRL / ours) |",
        "|---|---|---|---|---|---|---|"]
    for ours, theirs in TRL_PAIRS.items():
        (g_ours, t_ours), (g_trl, t_trl) = summary(f"ours-{ours}"), summary(f"trl-{theirs}")
        lines.append(
            f"| {ours} | {g_ours} | {t_ours:.0f} | {theirs} | {g_trl} | {t_trl:.0f} | "
            f"{t_trl / t_ours:.2f}x |")
    lines += ["", "Per seed (held-out gain, wall time in s):", ""]
    lines += [f"- {name}, seed {seed}: {gains[name, seed]:+.3f}, {wall[name, seed]:.0f}" for name,
              seed in wall]
    md = "\n".join(lines) + "\n"
    with open(os.path.join(out, "trl_compare.md"), "w") as f:
        f.write(md)
    print(md)


def evaluate_all(paths, extra):
    """evaluate.py on every policy at once (one process: the prompts and scorer load once)."""
    cmd = [sys.executable, os.path.join(HERE, "evaluate.py"), *paths,
           f"--DATASET={os.path.join(HERE, 'data', 'eval_prompts.jsonl')}", *extra]
    result = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"evaluation failed: {last_error(result.stderr)}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def draw(runs, evals, wall, path):
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    for ax, key, title in zip(axes.flat, ("reward", "kl", "entropy", "response_length"),
                              ("reward (training prompts)", "KL to the reference (nats/sequence)",
                               "entropy (nats/token)", "response length (tokens)")):
        for algorithm, rows in runs.items():
            xs = [r["responses_generated"] for r in rows]
            ys = [r[key] for r in rows]
            ax.plot(xs, ys, alpha=0.2)
            ax.plot(xs, plotting.smooth(ys, max(1, len(ys) // 10)), label=algorithm,
                    color=ax.lines[-1].get_color(), linewidth=2)
        ax.set_title(title)
        ax.set_xlabel("responses generated")
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    names = list(runs)
    axes[1, 1].bar(names, [wall[n] for n in names], color="tab:gray")
    axes[1, 1].set_title("wall time per run (s), whole process")
    means = [evals["initial"]["mean"]] + [evals[n]["mean"] for n in names]
    errors = [evals["initial"]["stderr"]] + [evals[n]["stderr"] for n in names]
    axes[1, 2].bar(["initial"] + names, means, yerr=errors, capsize=4, color="tab:green")
    axes[1, 2].set_title("held-out reward (evaluate.py), +- 1 s.e.")
    for ax in axes[1, 1:]:
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(
        "PPO, GRPO, DAPO, REINFORCE on the embedded default task, same seed and response budget")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(runs, evals, wall, responses):
    lines = [f"Embedded default task, seed 0, {responses} responses per algorithm, 32 per step. "
             "Held-out reward: evaluate.py on data/eval_prompts.jsonl, 8 samples per prompt "
             f"(initial policy: {evals['initial']['mean']:+.3f} +- "
             f"{evals['initial']['stderr']:.3f}).", "",
             "| algorithm | steps | responses generated | wall time (s) | train reward, last 10 "
             "steps | held-out reward | gain (z) | KL at end (nats/seq) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, rows in runs.items():
        last = rows[-10:]
        e = evals[name]
        lines.append(
            f"| {name} | {len(rows)} | {rows[-1]['responses_generated']} | {wall[name]:.0f} | "
            f"{sum(r['reward'] for r in last) / len(last):+.3f} | {e['mean']:+.3f} +- "
            f"{e['stderr']:.3f} | {e['gain']:+.3f} ({e['z']:.1f}) | "
            f"{sum(r['kl'] for r in last) / len(last):.2f} |")
    return "\n".join(lines) + "\n\nHow the algorithms differ:\n\n" + DIFFERENCES


def main(argv=None):
    parser = script.ArgumentParser(prog="bench/compare.py", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, default=3200,
                        help="responses each algorithm generates")
    parser.add_argument("--algorithms", default="ppo,grpo,dapo,reinforce")
    parser.add_argument("--out", default=os.path.join("runs", "compare"))
    parser.add_argument("--trl", metavar="PYTHON",
                        help="instead: compare grpo, dapo, reinforce with TRL's "
                        "GRPOTrainer and RLOOTrainer, run by this Python (a virtualenv with "
                        "trl==1.16.0)")
    parser.add_argument("--seeds", default="0,1,2",
                        help="with --trl: the seeds to run each pair with")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if args.trl:
        seeds = [int(s) for s in args.seeds.split(",")]
        names = [name for ours, theirs in TRL_PAIRS.items()
                 for name in (f"ours-{ours}", f"trl-{theirs}")]
        check_arguments(args, extra, [os.path.join(args.out, f"{name}-seed{seed}")
                                      for seed in seeds for name in names])
    else:
        check_arguments(args, extra,
                        [os.path.join(args.out, a) for a in args.algorithms.split(",")])
    from tasks import sentiment
    sentiment.build()
    if args.trl:
        return compare_with_trl(args.trl, args.out, [int(s) for s in args.seeds.split(",")])
    runs, wall = {}, {}
    for algorithm in args.algorithms.split(","):
        out_dir = os.path.join(args.out, algorithm)
        wall[algorithm] = run_algorithm(algorithm, out_dir, args.responses, extra)
        runs[algorithm] = plotting.read_metrics(os.path.join(out_dir, "metrics.jsonl"))
    results = evaluate_all([sentiment.POLICY_DIR] + [os.path.join(args.out, a, "policy")
                                                     for a in runs], extra)
    evals = {"initial": results[0], **dict(zip(runs, results[1:]))}
    draw(runs, evals, wall, os.path.join(args.out, "compare.png"))
    md = table(runs, evals, wall, args.responses)
    with open(os.path.join(args.out, "compare.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    sys.exit(script.run(main))
