"""The health checks (machinery/health.py) against runs that went well and runs that went wrong:
the alarms each run raised, and the extremes that each check's statistic reached, to set beside
its threshold (docs/health.md). A healthy run that raises an alarm is a false alarm.

    python bench/health.py run [--cases NAME ...]     # each case into runs/health/NAME
    python bench/health.py report [RUN_FOLDER ...]    # those, or every folder in runs/health

The family cases need `python bench/family.py build` first. report replays the checks over each
run's metrics.jsonl with the run's settings (config.json), so any run folder can be given, one made
before the checks existed included (bench/real_model.py's runs).
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)  # run as python bench/health.py
from bench import family  # noqa: E402
import plotting  # noqa: E402
from machinery import health, script  # noqa: E402
from machinery.script import Refusal  # noqa: E402

OUT = os.path.join(HERE, "runs", "health")

# name -> (ppo.py's arguments, whether the run is healthy). The failures are the ones on record:
# a learning rate 100x the embedded default's, GRPO at 3e-3 on addition (it collapsed to 0.01
# accuracy), DAPO's overlong shaping on the family's aside task (23 -> 3 tokens).
CASES = {"default": ([], True),
         "arithmetic-ppo": (["configs/arithmetic_ppo.py"], True),
         "arithmetic-grpo": (["configs/arithmetic_grpo.py"], True),
         "default-lr3e-2": (["--LEARNING_RATE=3e-2", "--MAX_STEPS=20"], False),
         "arithmetic-grpo-lr3e-3": (["configs/arithmetic_grpo.py", "--LEARNING_RATE=3e-3",
                                     "--MAX_STEPS=100"], False)}
FAMILY_ARMS = {"ppo": ("ppo", family.ARMS["ours-ppo"][2]),
               "grpo": ("grpo", family.ARMS["ours-grpo-e1"][2]),
               "dapo": ("dapo", family.ARMS["ours-dapo-e1-noshape"][2]),
               "reinforce": ("reinforce", family.ARMS["ours-reinforce"][2])}
for _task in family.TASKS:
    for _arm, (_algorithm, _extra) in FAMILY_ARMS.items():
        for _seed in (0, 1, 2):
            CASES[f"family-{_task}-{_arm}-seed{_seed}"] = (
                ("family", _task, _algorithm, _seed, _extra), True)
CASES["family-aside-dapo-shaped-seed0"] = (
    ("family", "aside", "dapo", 0, family.ARMS["ours-dapo-e1"][2]), False)


def command(name):
    args, _ = CASES[name]
    out = os.path.join(OUT, name)
    if args and args[0] == "family":
        _, task, algorithm, seed, extra = args
        return family.ours_command(task, algorithm, seed, out, ["--HEALTH=warn", *extra])
    return [sys.executable, "ppo.py", *args, f"--OUTPUT_DIR={out}", "--OVERWRITE=True",
            "--PLOT_EVERY=100000", "--HEALTH=warn"]


def run(names):
    for name in names:
        if os.path.exists(os.path.join(OUT, name, "policy")):
            continue
        print(name, flush=True)
        with open(os.path.join(OUT, f"{name}.log"), "w") as log:
            subprocess.run(command(name), cwd=HERE, stdout=log, stderr=subprocess.STDOUT)


# ---- the extremes of each check's statistic over a run -----------------------------------------

def extremes(rows):
    """{statistic: its most alarming value over the run}, one per check."""
    steps = health.training_rows(rows)

    def col(key, rs=steps):
        return [r.get(key) for r in rs]

    def per_token(r):
        return r["kl"] / r["response_length"] if r.get("response_length") else None

    kl_rows = [r for r in steps if health.finite(r.get("kl"))]
    rises = [(b["kl"] - a["kl"]) / b["response_length"] for a, b in zip(kl_rows, kl_rows[1:])
             if b.get("response_length")]
    first = steps[0] if steps else {}
    out = {"max approx_kl": max((v for v in col("approx_kl") if health.finite(v)), default=None),
           "max kl rise per token": max(rises, default=None),
           "max kl per token": max((per_token(r) for r in kl_rows if per_token(r) is not None),
                                   default=None)}
    ent = [v for v in col("entropy") if health.finite(v)]
    out["min entropy (step 0)"] = (min(ent), ent[0]) if ent else None
    lengths = [v for v in col("response_length") if health.finite(v)]
    out["min response_length (step 0)"] = (min(lengths), lengths[0]) if lengths else None
    pinned = run_length = 0  # steps in a row without EOS, where half ended at step 0
    for v in col("eos_fraction") if first.get("eos_fraction", 0) >= health.EOS_START_MIN else []:
        run_length = run_length + 1 if v == 0 else 0
        pinned = max(pinned, run_length)
    out["longest run of eos_fraction = 0 (half ended at step 0)"] = pinned
    ev = [v for v in col("explained_variance", steps[health.EV_WARMUP:]) if health.finite(v)]
    out[f"lowest mean explained_variance over {health.EV_STEPS} steps"] = min(
        (sum(ev[i:i + health.EV_STEPS]) / health.EV_STEPS
         for i in range(len(ev) - health.EV_STEPS + 1)), default=None)
    key = "reward_std_in_group" if any("reward_std_in_group" in r for r in steps) else "reward_std"
    longest = run_length = 0
    for v in col(key):
        run_length = run_length + 1 if v == 0 else 0
        longest = max(longest, run_length)
    out[f"longest run of {key} = 0"] = longest
    norms = [v for v in col("grad_norm") if health.finite(v)]
    out["max grad_norm / median before"] = max(
        (norms[i] / statistics.median(norms[:i]) for i in range(health.GRAD_HISTORY, len(norms))
         if statistics.median(norms[:i]) > 0), default=None)
    evals = [r for r in rows if health.finite(r.get("eval_reward"))]
    drops = [(max(evals[:i], key=lambda r: r["eval_reward"])["eval_reward"] - e["eval_reward"])
             for i, e in enumerate(evals) if i]
    out["max held-out drop below its best"] = max(drops, default=None)
    return out


def replay(rows, config_path):
    """{check: first step it fires on} by running the checks over the rows as the run logged them
    (they are pure functions of the rows), with the run's own settings: the same for a run made
    before the checks existed as for one that logged its health field."""
    with open(config_path) as f:
        settings = json.load(f)
    cfg = argparse.Namespace(**{k: settings.get(k) for k in ("KL_TARGET", "MAX_NEW_TOKENS")})
    rows = [{k: v for k, v in r.items() if k != "health"} for r in rows]
    fired = {}
    for i in range(1, len(rows) + 1):
        for alarm in health.check(rows[:i], cfg):
            fired.setdefault(alarm.check, rows[i - 1]["step"])
    return fired


def alarming(key, value):
    """A statistic as one number that grows towards its alarm (a (lowest, step 0) pair: the share
    of step 0's it fell to, negated)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        low, first = value
        return -(low / first) if first else None
    return -value if key.startswith("lowest") else value


def report(folders):
    """The table over the run folders (default: every folder in runs/health). A folder given that is
    none is refused; a run without metrics rows or settings is skipped, named with why."""
    missing = [d for d in folders if not os.path.isdir(d)]
    if missing:
        raise Refusal(f"no such run folder: {', '.join(map(repr, missing))}")
    folders = folders or sorted(d for d in glob.glob(os.path.join(OUT, "*")) if os.path.isdir(d))
    if not folders:
        raise Refusal(f"no run folders in {OUT}: run `python bench/health.py run` first, or name "
                      "run folders")
    false_alarms, worst, skipped, reported = 0, {}, [], 0
    for d in folders:
        path, config_path = os.path.join(d, "metrics.jsonl"), os.path.join(d, "config.json")
        # a half-written last line (a live run) is skipped, as plotting.py skips it
        rows = [r for r in plotting.read_metrics(path) if "step" in r] \
            if os.path.isfile(path) else []
        why = ("no metrics.jsonl" if not os.path.isfile(path) else "no rows in metrics.jsonl"
               if not rows else "no config.json (the run's settings, which the checks read)"
               if not os.path.isfile(config_path) else None)
        if why:
            skipped.append(f"{d} ({why})")
            continue
        reported += 1
        name = os.path.basename(os.path.normpath(d))
        healthy = CASES.get(name, (None, True))[1]
        fired = replay(rows, config_path)
        if healthy:
            false_alarms += len(fired)
        stats = extremes(rows)
        for key, value in stats.items():
            x = alarming(key, value)
            if x is not None and (healthy, key) not in worst or \
                    x is not None and x > worst[healthy, key][0]:
                worst[healthy, key] = (x, name, value)
        print(json.dumps({"run": name, "healthy": healthy, "steps": len(rows),
                          "alarms (first step)": fired, **{
                              k: (round(v, 4) if isinstance(v, float) else
                                  [round(x, 4) for x in v] if isinstance(v, tuple) else v)
                              for k, v in stats.items()}}))
    if not reported:
        raise Refusal(f"none of the {len(folders)} folder(s) holds a run to report: "
                      + "; ".join(skipped))
    print("\n| statistic | most alarming in a healthy run | most alarming in a failed run |")
    print("|---|---|---|")
    for key in dict.fromkeys(k for _, k in worst):
        cells = []
        for healthy in (True, False):
            _, name, value = worst.get((healthy, key), (None, "-", None))
            cells.append(f"{value} ({name})" if value is not None else "-")
        print(f"| {key} | {cells[0]} | {cells[1]} |")
    print(f"\nfalse alarms (alarms raised by healthy runs): {false_alarms}")
    for line in skipped:
        print(f"skipped: {line}")


def main(argv):
    p = script.ArgumentParser(prog="bench/health.py", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "report"))
    p.add_argument("folders", nargs="*", help="report: run folders (default: runs/health/*)")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    a = p.parse_args(argv)
    if a.command == "run":
        os.makedirs(OUT, exist_ok=True)
        run(a.cases)
    report(a.folders if a.command == "report" else [os.path.join(OUT, n) for n in a.cases])


if __name__ == "__main__":
    sys.exit(script.run(main))
