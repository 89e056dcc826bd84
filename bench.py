"""Where a step's time and memory go: seconds per phase, generated tokens per second, peak memory.

    python bench.py                        # the embedded default task, 3 warm-up + 10 timed steps
    python bench.py --steps=20 -- --ALGORITHM=grpo --GROUP_SIZE=4 --BATCH_SIZE=8    # after --: ppo.py settings
    python bench.py --sweep                # also: step time against response length and batch size

Prints a table and writes bench.json (in --out). Timings come from the trainer's own per-phase clocks (which
synchronise the GPU at phase boundaries); memory is the process's peak RSS on CPU and
torch.cuda.max_memory_allocated per GPU. Warm-up steps are excluded: the first steps pay for lazy initialisation.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile

import torch

import ppo

PHASES = ["time_generate", "time_reward", "time_forward", "time_update", "step_time"]


def measure(settings, steps, warmup):
    """Runs warmup + steps PPO steps with these ppo.py settings; returns the timed steps' summary."""
    with tempfile.TemporaryDirectory() as out:
        cfg = ppo.load_config([*settings, f"--OUTPUT_DIR={out}", f"--MAX_STEPS={warmup + steps}"])
        trainer = ppo.PPOTrainer(cfg, log=lambda *a: None)
        for d in {d for d in trainer.devices.values() if d.type == "cuda"}:
            torch.cuda.reset_peak_memory_stats(d)
        rows = [trainer.step()[0] for _ in range(warmup + steps)][warmup:]
    summary = {k: {"mean": statistics.mean(r[k] for r in rows), "stdev": statistics.pstdev(r[k] for r in rows)}
               for k in PHASES}
    tokens = sum(r["response_length"] * cfg.BATCH_SIZE * cfg.GROUP_SIZE for r in rows)
    summary["tokens_per_sec"] = tokens / sum(r["step_time"] for r in rows)
    summary["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    summary["peak_cuda_mib"] = {str(d): torch.cuda.max_memory_allocated(d) / 2 ** 20
                                for d in {d for d in trainer.devices.values() if d.type == "cuda"}}
    summary["reward_first_last"] = [rows[0]["reward"], rows[-1]["reward"]]
    return summary


def phase_table(summary):
    lines = ["| phase | seconds per step | share |", "|---|---|---|"]
    total = summary["step_time"]["mean"]
    for k in PHASES:
        m, s = summary[k]["mean"], summary[k]["stdev"]
        lines.append(f"| {k.removeprefix('time_')} | {m:.4f} +- {s:.4f} | {100 * m / total:.0f}% |")
    lines.append(f"\ngenerated tokens/s {summary['tokens_per_sec']:.0f}; peak RSS {summary['peak_rss_mib']:.0f} MiB"
                 + "".join(f"; {d} peak {m:.0f} MiB" for d, m in summary["peak_cuda_mib"].items()))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="also time MAX_NEW_TOKENS x BATCH_SIZE")
    parser.add_argument("--out", default=".")
    args, settings = parser.parse_known_args()
    settings = [a for a in settings if a != "--"]
    ppo.quiet_progress_bars()
    import default_task
    default_task.build()
    try:
        main_summary = measure(settings, args.steps, args.warmup)
    except ppo.ConfigError as e:
        sys.exit(f"error: {e}")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    report = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
              "settings": settings, "steps": args.steps, "warmup": args.warmup, "phases": main_summary}
    print(f"{device}, torch {torch.__version__}; {args.steps} timed steps after {args.warmup} warm-up\n")
    print(phase_table(main_summary))
    if args.sweep:
        print("\n| MAX_NEW_TOKENS \\ BATCH_SIZE | 8 | 16 | 32 |\n|---|---|---|---|")
        report["sweep"] = []
        for length in (8, 16, 32):
            cells = []
            for batch in (8, 16, 32):
                s = measure([*settings, f"--MAX_NEW_TOKENS={length}", f"--BATCH_SIZE={batch}",
                             f"--MINI_BATCH_SIZE={min(batch, 8)}", f"--MICRO_BATCH_SIZE={min(batch, 8)}"],
                            max(3, args.steps // 2), 1)
                report["sweep"].append({"max_new_tokens": length, "batch_size": batch,
                                        "step_time": s["step_time"]["mean"], "tokens_per_sec": s["tokens_per_sec"]})
                cells.append(f"{s['step_time']['mean']:.2f} s")
            print(f"| {length} | " + " | ".join(cells) + " |")
    path = os.path.join(args.out, "bench.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
