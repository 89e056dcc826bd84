import json
import math
import subprocess
import sys

import plotting


def write_metrics(path, n=30):
    with open(path, "w") as f:
        for step in range(n):
            f.write(json.dumps({"step": step, "reward": step / n, "kl": 0.1 * step,
                                "policy_loss": -0.01,
                                "value_loss": 1 / (step + 1), "advantage": 0.0,
                                "entropy": 1 - step / 100,
                                "clipfrac": 0.1, "approx_kl": float(
                                    "nan") if step == 3 else 0.01}) + "\n")
        f.write('{"step": 30, "rew')  # a run killed mid-write leaves half a line


def test_plot_run_writes_both_pngs(tmp_path):
    write_metrics(tmp_path / "metrics.jsonl")
    paths = plotting.plot_run(str(tmp_path))
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(plotting.read_metrics(tmp_path / "metrics.jsonl")) == 30


def test_plotting_command_line(tmp_path):
    write_metrics(tmp_path / "metrics.jsonl")
    out = subprocess.run([sys.executable, plotting.__file__, str(tmp_path)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ppo_metrics.png").stat().st_size > 10_000
    assert (tmp_path / "training_metrics.png").stat().st_size > 10_000


def test_smooth_is_a_centred_moving_average():
    assert plotting.smooth([0, 0, 3, 0, 0], 3) == [0, 1, 1, 1, 0]
    # the window shrinks symmetrically at the ends
    assert plotting.smooth([0, 6, 0, 0, 3], 5) == [0, 2, 1.8, 1, 3]
    assert plotting.smooth([1.0, 2.0], 1) == [1.0, 2.0]
    assert all(math.isfinite(v) for v in plotting.smooth([1.0] * 7, 4))


def test_evaluations_are_drawn_as_points_and_the_final_one_is_no_step(tmp_path, monkeypatch):
    write_metrics(tmp_path / "metrics.jsonl")
    rows = plotting.read_metrics(tmp_path / "metrics.jsonl")
    for r in rows[::10]:
        r.update(eval_reward=r["step"] / 30, eval_reward_se=0.01)
    rows.append({"step": 30, "eval_reward": 0.9, "eval_reward_se": 0.01, "time_eval": 0.1,
                 "elapsed": 5.0})
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    drawn = []

    def capture(rows, panels, path, title, ncols):
        drawn.append((panels, title))
    monkeypatch.setattr(plotting, "plot_metrics", capture)
    plotting.plot_run(str(tmp_path))
    (main_panels, title), _ = drawn
    assert title.endswith("(30 steps)") and plotting.training_steps(rows) == 30
    assert ("held-out reward (EVAL_DATASET)", ["eval_reward"]) in main_panels
