"""What a user watches: charts drawn from OUTPUT_DIR/metrics.jsonl alone, and the live trackers
(REPORT_TO). This file never imports ppo.py.

    python plotting.py runs/ppo   # redraws runs/ppo/ppo_metrics.png, runs/ppo/training_metrics.png

ppo_metrics.png shows the figures to watch first (reward, KL, the two losses, advantage, entropy,
and the held-out reward when EVAL_DATASET is set); training_metrics.png shows every logged metric,
related ones sharing a panel. Each panel draws the raw per-step value faintly and a centred moving
average over ~10% of the run on top. Tracker sends the same rows, as they are written, to
TensorBoard, Weights & Biases or Trackio.
"""

import importlib
import json
import math
import os
import sys
import tempfile

from matplotlib.figure import Figure  # no pyplot: files only, no display, no global figure state

# + KL, held-out
MAIN_METRICS = ["reward", "kl", "policy_loss", "value_loss", "advantage", "entropy", "eval_reward"]
NOT_PLOTTED = {"step"}  # the x axis
# what each panel means, in a few words; metrics without an entry are titled by their key
TITLES = {
    "policy_loss": "policy loss (clipped surrogate)",
    "value_loss": "value loss (clipped)",
    "reward": "reward (score of the response)",
    "reward_std": "reward std across the batch",
    "advantage": "advantage (GAE, before whitening)",
    "entropy": "entropy of the policy (nats/token)",
    "kl": "KL to the reference (nats/sequence)",
    "kl_coef": "KL coefficient",
    "non_score_reward": "KL penalty summed over the response",
    "rlhf_reward": "reward + KL penalty",
    "clipfrac": "fraction of tokens clipped (policy)",
    "value_clipfrac": "fraction of tokens clipped (value)",
    "approx_kl": "approx KL(old || new) per update",
    "explained_variance": "critic explained variance",
    "response_length": "response length (tokens)",
    "eos_fraction": "fraction of responses that ended (EOS)",
    "ratio": "mean probability ratio new/old",
    "grad_norm": "policy gradient norm (before clipping)",
    "critic_grad_norm": "critic gradient norm (before clipping)",
    "update_entropy": "entropy during the update",
    "value": "value prediction",
    "return": "return (value target)",
    "prompts_truncated": "prompts truncated in the batch",
    "reward_truncated": "rows cut to fit the reward model",
    "lr": "policy learning rate",
    "tokens_per_sec": "generated tokens / second",
    "reward_std_in_group": "reward std within a prompt's group",
    "groups_dropped": "fraction of groups dropped (dynamic sampling)",
    "sampling_rounds": "generation rounds per step",
    "clipfrac_low": "fraction clipped below 1 - eps_low",
    "clipfrac_high": "fraction clipped above 1 + eps_high",
    "kl_loss": "KL term in the loss (k3, per token)",
    "responses_generated": "responses generated so far",
    "epoch": "passes over the prompts",
    "skipped_updates": "updates skipped for NaN/inf so far",
    "time_generate": "seconds: generation",
    "time_reward": "seconds: reward model or function",
    "time_forward": "seconds: policy, reference, critic forwards",
    "time_update": "seconds: PPO update",
    "step_time": "seconds per step",
    "elapsed": "seconds since start",
    "eval_reward": "held-out reward (EVAL_DATASET)",
    "eval_reward_se": "held-out reward: standard error",
    "eval_response_length": "held-out response length (tokens)",
    "time_eval": "seconds: evaluation",
    "rollout_is_capped": "share of tokens above the rollout weight's cap",
}


# Metrics drawn together on one panel of training_metrics.png (same units, read side by side).
SHARED_PANELS = [
    ("entropy (nats/token): rollout, update", ["entropy", "update_entropy"]),
    ("fraction of tokens clipped", ["clipfrac", "clipfrac_low", "clipfrac_high", "value_clipfrac"]),
    ("|log pi - log pi_sampler| per token: mean, max",
     ["rollout_logprob_diff", "rollout_logprob_diff_max"]),
    ("value prediction and return", ["value", "return"]),
    ("gradient norms (before clipping)", ["grad_norm", "critic_grad_norm"]),
    ("KL penalty and reward + KL penalty", ["non_score_reward", "rlhf_reward"]),
    ("seconds per step, by phase", ["step_time", "time_generate", "time_reward", "time_forward",
                                    "time_update"]),
]
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]


def read_metrics(path):
    """metrics.jsonl -> list of dicts; a half-written last line (a run killed mid-write), and any
    line that is not a JSON object, is skipped. null (a non-finite value) reads as None."""
    rows = []
    with open(path, errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def smooth(values, window):
    """Centred moving average, so the curve does not lag the raw values. Near the ends the window
    shrinks on both sides alike, so the first and last points are the raw values rather than a
    one-sided (biased) average."""
    out = []
    for i in range(len(values)):
        h = min(window // 2, i, len(values) - 1 - i)
        out.append(sum(values[i - h:i + h + 1]) / (2 * h + 1))
    return out


def number(v):
    """Whether a logged value can be drawn: a finite int or float (None, text and flags cannot)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _panel(ax, steps, rows, keys, title):
    """One panel: each metric's raw per-step values faintly, its centred moving average on top."""
    drawn = 0
    for key, color in zip(keys, COLORS):
        finite = [(s, r[key]) for s, r in zip(steps, rows) if number(r.get(key))]
        if not finite:
            continue
        xs, ys = zip(*finite)
        # logged now and then (eval_*): the points themselves, with their s.e. band
        if len(xs) < len(steps) / 2:
            ax.plot(xs, ys, color=color, linewidth=2, marker="o", markersize=4, label=key)
            se = [r.get(key + "_se") for r in rows if number(r.get(key))]
            if all(isinstance(x, (int, float)) for x in se):
                ax.fill_between(xs, [y - e for y, e in zip(ys, se)],
                                [y + e for y, e in zip(ys, se)], color=color,
                                alpha=0.2, linewidth=0)
        else:
            ax.plot(xs, ys, color=color, alpha=0.3, linewidth=1)
            # ~10%
            ax.plot(xs, smooth(list(ys), max(1, len(ys) // 10)), color=color, linewidth=2,
                    label=key)
        drawn += 1
    ax.set_title(title if drawn else title + " (no finite values)", fontsize=10)
    if len(keys) > 1 and drawn:
        ax.legend(fontsize=7, loc="best")
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def panels_for(keys, shared):
    """(title, keys) per panel: a shared panel where any of its metrics is logged, else one panel
    per metric."""
    group_of = {k: (title, group) for title, group in shared for k in group}
    panels, done = [], set()
    for key in keys:
        if key in group_of:
            title, group = group_of[key]
            if title not in done:
                panels.append((title, [k for k in group if k in keys]))
                done.add(title)
        else:
            panels.append((TITLES.get(key, key), [key]))
    return panels


def health_alarms(rows):
    """{check: the steps it fired on} from the rows' health field, in the order they first fired."""
    fired = {}
    for i, r in enumerate(rows):
        names = r.get("health")
        for name in names if isinstance(names, list) else []:
            fired.setdefault(str(name), []).append(r["step"] if number(r.get("step")) else i)
    return fired


def plot_metrics(rows, panels, path, title, ncols):
    """The panels in a grid, each alarm's steps shaded red on every panel (health_alarms)."""
    steps = [r["step"] if number(r.get("step")) else i for i, r in enumerate(rows)]
    alarmed = sorted({s for fired in health_alarms(rows).values() for s in fired})
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (panel_title, keys) in zip(axes.flat, panels):
        _panel(ax, steps, rows, keys, panel_title)
        for s in alarmed:
            ax.axvspan(s - 0.5, s + 0.5, color="tab:red", alpha=0.15, linewidth=0)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    # Fixed margins in inches: tight_layout would double the drawing time (~2 s on 2 cores for 35
    # panels).
    w, h = fig.get_size_inches()
    fig.suptitle(title, fontsize=13, y=1 - 0.2 / h)
    fig.subplots_adjust(left=0.5 / w, right=1 - 0.2 / w, bottom=0.45 / h, top=1 - 0.85 / h,
                        wspace=0.25, hspace=0.5)
    # A temporary name of this process's own (a training run and any number of `python plotting.py
    # RUN` may draw the same chart at once), renamed into place: a reader never sees a half-written
    # PNG. The name starts with the PNG's, so a new run in the folder clears what a kill left.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                               prefix=os.path.basename(path) + ".tmp.", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            # fast zlib level: 0.3 s less per redraw
            fig.savefig(f, format="png", dpi=100, pil_kwargs={"compress_level": 1})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def training_steps(rows):
    """The rows that are training steps: the final policy's evaluation (eval_* alone) is a row, not
    a step."""
    return sum(1 for r in rows if any(k not in ("step", "elapsed", "time_eval")
                                      and not k.startswith("eval_")
                                      for k in r))


def plot_run(out_dir):
    """Draws ppo_metrics.png and training_metrics.png in out_dir from its metrics.jsonl; returns
    their paths."""
    rows = read_metrics(os.path.join(out_dir, "metrics.jsonl"))
    if not rows:
        raise ValueError(f"{out_dir}/metrics.jsonl has no rows to plot")
    numeric = []  # every numeric key of any row, in first-seen order (some rows lack some keys)
    for row in rows:
        numeric += [k for k, v in row.items() if k not in NOT_PLOTTED and k not in numeric
                    and isinstance(v, (int, float)) and not isinstance(v, bool)]
    name = os.path.basename(os.path.normpath(out_dir))
    n_steps = training_steps(rows)
    fired = health_alarms(rows)
    alarms = "; health: " + ", ".join(f"{check} (step {steps[0]}" + (
        f", {len(steps)} steps)" if len(steps) > 1 else ")")
        for check, steps in fired.items()) if fired else ""
    # only skipped steps so far: what there is
    main_keys = [k for k in MAIN_METRICS if k in numeric] or numeric
    paths = [os.path.join(out_dir, "ppo_metrics.png"),
             os.path.join(out_dir, "training_metrics.png")]
    plot_metrics(rows, panels_for(main_keys, []), paths[0],
                 f"{name}: PPO metrics ({n_steps} steps){alarms}", ncols=3)
    # the figures to watch first lead here too
    ordered = main_keys + [k for k in numeric if k not in main_keys]
    plot_metrics(rows, panels_for(ordered, SHARED_PANELS), paths[1],
                 f"{name}: all metrics ({n_steps} steps){alarms}", ncols=5)
    return paths


class Tracker:
    """REPORT_TO's live view of a run: each metrics row under its flat names (as in metrics.jsonl)
    at its step, the samples as a table, the resolved settings and a run name. The package is
    imported only here, when chosen. TensorBoard writes under OUTPUT_DIR/tensorboard/RUN_NAME (a
    resumed run drops the events past its checkpoint); wandb and trackio log to the project named by
    WANDB_PROJECT / TRACKIO_PROJECT (default "ppo")."""

    def __init__(self, kind, out_dir, run_name, settings, start_step=0):
        self.kind = kind
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(out_dir, "tensorboard", run_name),
                                        purge_step=start_step or None)
            self.writer.add_text("config", "```\n" + json.dumps(settings, indent=2) + "\n```",
                                 start_step)
        # wandb and trackio share one API: init(project, name, config), log(dict, step), Table,
        # finish()
        else:
            self.module = importlib.import_module(kind)
            project = os.environ.get(f"{kind.upper()}_PROJECT", "ppo")
            extra = {"dir": out_dir} if kind == "wandb" else {}
            self.module.init(project=project, name=run_name, config=settings, **extra)

    def log(self, metrics, step):
        numbers = {k: v for k, v in metrics.items()
                   if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.kind == "tensorboard":
            for key, value in numbers.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        else:
            self.module.log(numbers, step=step)

    def log_text(self, tag, text, step):
        """A line of text at a step (a health alarm)."""
        if self.kind == "tensorboard":
            self.writer.add_text(tag, text, step)
            self.writer.flush()
        elif hasattr(self.module, "alert"):  # wandb (and trackio): a notification as well
            self.module.alert(title=f"{tag} at step {step}", text=text)

    def log_samples(self, samples, step):
        columns = ["prompt", "response", "reward"]
        rows = [[str(s["prompt"]), s["response"], s["reward"]] for s in samples]
        if self.kind == "tensorboard":  # a markdown table
            table = ["| " + " | ".join(columns) + " |", "|---|---|---|"]
            table += [
                "| " + " | ".join(str(x).replace("|", "\\|").replace("\n", " ") for x in row) + " |"
                for row in rows]
            self.writer.add_text("samples", "\n".join(table), step)
        else:
            self.module.log({"samples": self.module.Table(columns=columns, data=rows)}, step=step)

    def close(self):
        if self.kind == "tensorboard":
            self.writer.close()
        else:
            self.module.finish()


def main(argv):
    """python plotting.py OUTPUT_DIR [--DEBUG=True]: redraws its PNGs and returns the exit code. Bad
    input is one line and exit 2, a fault one line and exit 1 (machinery/script.py), as for
    ppo.py."""
    from machinery import script
    return script.run(redraw, argv)


def redraw(argv):
    from machinery.script import Refusal
    if len(argv) != 1 or argv[0].startswith("-"):
        raise Refusal("usage: python plotting.py OUTPUT_DIR [--DEBUG=True]   (the folder holding "
                      "metrics.jsonl)")
    out_dir = argv[0]
    path = os.path.join(out_dir, "metrics.jsonl")
    if not os.path.isdir(out_dir):
        raise Refusal(f"{out_dir!r} is no folder: give a run's OUTPUT_DIR")
    if not os.path.isfile(path):
        raise Refusal(f"{out_dir!r} holds no metrics.jsonl: give a run's OUTPUT_DIR")
    try:
        rows = read_metrics(path)
    except OSError as e:
        raise Refusal(f"cannot read {path} ({e.strerror})") from None
    if not any("step" in r for r in rows):
        raise Refusal(f"{path} has no rows of metrics (JSON objects with a step) to plot")
    try:  # the PNGs go beside metrics.jsonl
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise Refusal(f"cannot write the charts into {out_dir!r} ({e.strerror}): plot a copy of "
                      "the folder where you can write") from None
    for p in plot_run(out_dir):
        print(p)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # machinery/, run from anywhere
    sys.exit(main(sys.argv[1:]))
