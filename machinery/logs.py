"""A run's logs, which rank 0 writes: config.json and the config files, one row per step in
metrics.jsonl and samples in samples.jsonl (trimmed to the steps a resumed checkpoint covers), the
health checks over the rows (machinery/health.py), the progress bar, the tracker (REPORT_TO) and the
charts (plotting.py)."""
import json
import os
import time

from . import health
from .run_files import clear_run, format_samples, json_line, keep_rows_before, write_file
from .script import first_line


class RunLog:
    """The logs of one run. `start` opens them (and the progress bar), `write` logs a step, `row` a
    row of its own (the final evaluation), `plot` redraws the charts, `close` ends the bar and the
    tracker however the run ends."""

    def __init__(self, cfg, ranks, log, config_files=()):
        self.cfg, self.ranks, self.log, self.config_files = cfg, ranks, log, config_files
        self.tracker = None  # REPORT_TO's, opened by start() on rank 0
        self.bar = None  # the progress bar, from start() to close()
        self.plot_warning = None  # the last chart failure said (plot)
        self.health_rows = []  # the rows the health checks read (a resumed run's first)
        self.health_fired = {}  # {check: steps it fired on}, in the order they first fired
        self.t0 = time.time()

    def start(self, step, total_steps):
        """Rank 0 writes config.json (and copies the config files into OUTPUT_DIR/configs/), opens
        the tracker, and trims metrics.jsonl and samples.jsonl to the steps before `step` (a new
        run: none; OVERWRITE also removes the replaced run's checkpoints). The clock `elapsed` goes
        on across a resume."""
        from tqdm import tqdm
        out, kept = self.cfg.OUTPUT_DIR, []
        if self.ranks.writes:
            if not self.cfg.RESUME:  # a new run: what an earlier one left (OVERWRITE) goes first
                clear_run(out)
            write_file(os.path.join(out, "config.json"), json.dumps(vars(self.cfg), indent=2))
            names = [os.path.basename(path) for path in self.config_files]
            for i, (path, name) in enumerate(zip(self.config_files, names), 1):
                with open(path) as f:
                    os.makedirs(os.path.join(out, "configs"), exist_ok=True)
                    # a/base.py b/base.py: 1_base.py ...
                    name = f"{i}_{name}" if names.count(name) > 1 else name
                    write_file(os.path.join(out, "configs", name), f.read())
            kept = keep_rows_before(os.path.join(out, "metrics.jsonl"), step)
            keep_rows_before(os.path.join(out, "samples.jsonl"), step)
        # the health checks read the rows a resumed run kept, and know which alarms fired
        kept = self.ranks.first_object(kept if self.ranks.writes else None) or []
        self.health_rows = list(kept)
        for row in kept:
            for name in row.get("health", []):
                self.health_fired[name] = self.health_fired.get(name, 0) + 1
        if self.ranks.writes and self.cfg.REPORT_TO != "none":
            import plotting
            name = self.cfg.RUN_NAME or os.path.basename(os.path.normpath(os.path.abspath(out)))
            self.tracker = plotting.Tracker(self.cfg.REPORT_TO, out, name, vars(self.cfg), step)
        self.t0 = time.time() - (kept[-1].get("elapsed", 0.0) if kept else 0.0)
        self.bar = tqdm(total=total_steps, initial=step, desc=self.cfg.ALGORITHM,
                        dynamic_ncols=True, disable=not self.ranks.writes)

    def write(self, metrics, samples, last):
        """One step's row in metrics.jsonl, after its health checks; its samples in samples.jsonl
        and on the console every SAMPLE_EVERY steps and at the last; the progress bar. Returns the
        alarms that fired for the first time at this step."""
        cfg, step = self.cfg, metrics["step"]
        alarms = self.check_health(metrics)
        self.bar.update()
        self.bar.set_postfix({**{k: f"{metrics[k]:.3f}"
                                 for k in ("reward", "kl", "value_loss", "response_length",
                                           "eval_reward") if k in metrics},
                              **({"health": "+".join(health.SHORT[n] for n in self.health_fired)}
                                 if self.health_fired else {})})
        self.row(metrics)
        if self.ranks.writes and samples and (step % cfg.SAMPLE_EVERY == 0 or last):
            with open(os.path.join(cfg.OUTPUT_DIR, "samples.jsonl"), "a") as f:
                f.writelines(json_line(s) for s in samples[:cfg.NUM_SAMPLES])
            self.bar.write(format_samples(samples[:cfg.NUM_SAMPLES], step))
            if self.tracker is not None:
                self.tracker.log_samples(samples[:cfg.NUM_SAMPLES], step)
        return alarms

    def check_health(self, row):
        """The health checks on the logged rows with this one last: the names of the alarms firing
        go into the row ("health"); the first firing of each check is one line on the console and
        text in the tracker, later ones are counted. Returns the first firings. HEALTH="off":
        none."""
        if self.cfg.HEALTH == "off":
            return []
        self.health_rows.append(row)
        alarms = health.check(self.health_rows, self.cfg)
        if alarms:
            row["health"] = [a.check for a in alarms]
        new = [a for a in alarms if a.check not in self.health_fired]
        for alarm in alarms:
            self.health_fired[alarm.check] = self.health_fired.get(alarm.check, 0) + 1
        for alarm in new:
            if self.ranks.writes:
                self.bar.write(alarm.line(row["step"]))
            if self.tracker is not None:
                self.tracker.log_text("health", alarm.line(row["step"]), row["step"])
        return new

    def row(self, metrics):
        """A row of metrics.jsonl, also sent to the tracker (REPORT_TO)."""
        metrics["elapsed"] = time.time() - self.t0
        if not self.ranks.writes:
            return
        with open(os.path.join(self.cfg.OUTPUT_DIR, "metrics.jsonl"), "a") as f:
            f.write(json_line(metrics))
        if self.tracker is not None:
            self.tracker.log(metrics, metrics["step"])

    def summary(self):
        """At the end of a run: how often each alarm fired (its first firing was said then)."""
        if self.health_fired:
            counts = [f"{name} on {n} step{'s' if n > 1 else ''}"
                      for name, n in self.health_fired.items()]
            self.log(f"health: {'; '.join(counts)} (metrics.jsonl's health field; shaded in the "
                     "PNGs)")

    def plot(self):
        """Redraws the PNGs from metrics.jsonl (~2 s on 2 CPU cores, hence PLOT_EVERY). A chart that
        cannot be drawn is a warning, never a fault: metrics.jsonl holds every figure, and
        `python plotting.py OUTPUT_DIR` draws them later."""
        import plotting
        path = os.path.join(self.cfg.OUTPUT_DIR, "metrics.jsonl")
        if not (self.ranks.writes and os.path.exists(path) and os.path.getsize(path)):
            return
        try:
            plotting.plot_run(self.cfg.OUTPUT_DIR)
        except Exception as e:
            warning = f"warning: the charts could not be redrawn ({type(e).__name__}: " \
                      f"{first_line(e)}); training goes on"
            if warning != self.plot_warning:  # said once, not at every PLOT_EVERY
                self.plot_warning = warning
                (self.bar.write if self.bar is not None else self.log)(warning)

    def say(self, message):
        """A message that ends the run: the bar's line is ended first, so it starts a line of its
        own."""
        if self.bar is not None:
            self.bar.close()
        self.log(message)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        if self.tracker is not None:  # flushed and closed however the run ends
            self.tracker.close()
