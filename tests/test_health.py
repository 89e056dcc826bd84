"""The health checks (machinery/health.py): each on synthetic rows at its boundary (it fires just
past its threshold and not at it), then end to end on induced failures, each raising its alarm in
the run's outputs."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import ppo
from conftest import ROOT, tiny_args
from machinery import health

CFG = SimpleNamespace(KL_TARGET=None, MAX_NEW_TOKENS=16)


def steps(n, **columns):
    """n training rows; each column a value for every row or a list of n values."""
    rows = []
    for i in range(n):
        row = {"step": i, "reward": 0.5, "lr": 3e-4}
        row.update({k: v[i] if isinstance(v, list) else v for k, v in columns.items()})
        rows.append(row)
    return rows


def fired(check, rows, cfg=CFG):
    alarm = check(rows, cfg)
    return alarm is not None


def test_update_too_large_reads_approx_kl_and_the_kl_rise_per_token():
    assert fired(health.update_too_large, steps(1, approx_kl=1.51))
    assert not fired(health.update_too_large, steps(1, approx_kl=1.5))
    alarm = health.update_too_large(steps(1, approx_kl=14.7), CFG)
    assert alarm.line(0).startswith("health: update too large at step 0: approx_kl 14.7 > 1.5")
    assert "--LEARNING_RATE=3e-06 ... 3e-05" in alarm.line(0)
    # a single pass: approx_kl 0, the KL to the reference jumps (per token of response)
    assert fired(health.update_too_large, steps(2, approx_kl=0.0, kl=[0.0, 5.1],
                                                response_length=10))
    assert not fired(health.update_too_large, steps(2, approx_kl=0.0, kl=[0.0, 5.0],
                                                    response_length=10))
    assert not fired(health.update_too_large, steps(2, kl=[10.0, 0.0], response_length=10))


def test_kl_runaway_with_a_fixed_coefficient_and_with_a_target():
    growing = [2.1 * 10 + i for i in range(5)]  # per token > 2 on each of 5 steps, growing
    assert fired(health.kl_runaway, steps(5, kl=growing, response_length=10))
    assert not fired(health.kl_runaway, steps(4, kl=growing[:4], response_length=10))
    flat = growing[:4] + [growing[3]]  # stopped growing
    assert not fired(health.kl_runaway, steps(5, kl=flat, response_length=10))
    low = [20.0 + i for i in range(5)]  # the first at exactly 2 per token
    assert not fired(health.kl_runaway, steps(5, kl=low, response_length=10))
    target = SimpleNamespace(KL_TARGET=6.0, MAX_NEW_TOKENS=16)
    assert fired(health.kl_runaway, steps(5, kl=12.01, response_length=10), target)
    assert not fired(health.kl_runaway, steps(5, kl=[12.01] * 4 + [12.0], response_length=10),
                     target)


def test_entropy_collapse_needs_both_the_floor_and_the_fall():
    assert fired(health.entropy_collapse, steps(2, entropy=[1.0, 0.049]))
    assert not fired(health.entropy_collapse, steps(2, entropy=[1.0, 0.05]))
    # below the floor but not a tenth of where it started: a task whose answers are few
    assert not fired(health.entropy_collapse, steps(2, entropy=[0.3, 0.04]))
    assert fired(health.entropy_collapse, steps(2, entropy=[0.41, 0.04]))


def test_length_collapse_short_or_pinned_at_the_limit():
    assert fired(health.length_collapse, steps(2, response_length=[8.0, 1.99]))
    assert not fired(health.length_collapse, steps(2, response_length=[8.0, 2.0]))
    assert fired(health.length_collapse, steps(2, response_length=[24.0, 3.6]))  # DAPO's, aside
    assert not fired(health.length_collapse, steps(2, response_length=[3.9, 0.5]))  # no room
    pinned = dict(response_length=[10.0] + [16.0] * 5)
    assert fired(health.length_collapse, steps(6, eos_fraction=[0.5] + [0.0] * 5, **pinned))
    assert not fired(health.length_collapse, steps(6, eos_fraction=[0.49] + [0.0] * 5, **pinned))
    assert not fired(health.length_collapse,
                     steps(6, eos_fraction=[0.5, 0.0, 0.06, 0.0, 0.0, 0.0], **pinned))
    # a task that never ended its replies is not a collapse
    assert not fired(health.length_collapse, steps(6, eos_fraction=0.0, **pinned))


def test_critic_not_learning_after_its_warm_up():
    ev = [0.0] * 10 + [-0.5] * 9 + [-0.51]  # the last 10 average -0.501
    assert fired(health.critic_not_learning, steps(20, explained_variance=ev))
    assert not fired(health.critic_not_learning, steps(19, explained_variance=ev[1:]))
    assert not fired(health.critic_not_learning, steps(20, explained_variance=ev[:-1] + [-0.5]))
    # hovering about 0 while the rewards are sparse is no alarm
    assert not fired(health.critic_not_learning,
                     steps(20, explained_variance=[0.0] * 10 + [-0.09, 0.06] * 5))
    assert not fired(health.critic_not_learning, steps(20))  # no critic


def test_no_signal_within_groups_and_over_the_batch():
    assert fired(health.no_signal, steps(5, reward_std_in_group=0.0, reward_std=0.3))
    assert not fired(health.no_signal, steps(4, reward_std_in_group=0.0))
    assert not fired(health.no_signal, steps(5, reward_std_in_group=[0.0] * 4 + [0.01]))
    alarm = health.no_signal(steps(5, reward_std=0.0), CFG)
    assert alarm.metric == "reward_std" and "REWARD_MODEL" in alarm.advice


def test_reward_hacking_is_the_held_out_reward_falling_while_training_rises():
    def run(now, trained):
        rows = steps(6, reward=[0.5, 0.5, 0.6, 0.6, 0.7, trained])
        rows[0].update(eval_reward=0.40, eval_reward_se=0.01)
        rows[2].update(eval_reward=0.50, eval_reward_se=0.01)  # the best
        rows.append({"step": 6, "eval_reward": now, "eval_reward_se": 0.01})  # the final row
        return rows
    assert fired(health.reward_hacking, run(now=0.457, trained=0.8))  # 3.04 s.e. below
    assert not fired(health.reward_hacking, run(now=0.458, trained=0.8))  # 2.97
    assert not fired(health.reward_hacking, run(now=0.40, trained=0.55))  # training fell too
    alarm = health.reward_hacking(run(now=0.40, trained=0.8), CFG)
    assert "best (0.5 at step 2)" in alarm.threshold


def test_gradients_non_finite_or_far_above_their_median():
    skipped = steps(1) + [{"step": 1, "skipped_updates": 1, "skip_reason": "reward nan"}]
    assert health.gradients(skipped, CFG).check == "non-finite values"
    norms = [1.0, 2.0, 1.5, 1.0, 3.0]  # median 1.5
    assert fired(health.gradients, steps(6, grad_norm=norms + [15.01]))
    assert not fired(health.gradients, steps(6, grad_norm=norms + [15.0]))
    assert not fired(health.gradients, steps(5, grad_norm=norms[1:] + [100.0]))  # 4 earlier


@pytest.mark.parametrize("check", health.CHECKS)
def test_each_check_is_quiet_on_a_healthy_run_and_named_for_the_bar(check):
    """A run whose metrics move as healthy ones do (docs/health.md): no check fires at any step."""
    n = 30
    rows = steps(n, approx_kl=0.02, clipfrac=0.1, kl=[0.1 * i for i in range(n)],
                 response_length=12.0, eos_fraction=0.9, entropy=[1.5 - 0.02 * i for i in range(n)],
                 explained_variance=[min(0.5, 0.05 * i) for i in range(n)],
                 reward_std_in_group=0.2, reward_std=0.3, grad_norm=[1.0 + 0.1 * (i % 3)
                                                                      for i in range(n)],
                 reward=[0.1 + 0.01 * i for i in range(n)])
    for i in (0, 10, 20):
        rows[i].update(eval_reward=0.1 + 0.01 * i, eval_reward_se=0.02)
    for i in range(1, n + 1):
        assert check(rows[:i], CFG) is None, i
    alarm = check(*{health.update_too_large: (steps(1, approx_kl=5.0), CFG),
                    health.kl_runaway: (steps(5, kl=[30.0 + i for i in range(5)],
                                              response_length=10), CFG),
                    health.entropy_collapse: (steps(2, entropy=[1.0, 0.0]), CFG),
                    health.length_collapse: (steps(2, response_length=[10.0, 1.0]), CFG),
                    health.critic_not_learning: (steps(20, explained_variance=-1.0), CFG),
                    health.no_signal: (steps(5, reward_std=0.0), CFG),
                    health.reward_hacking: (
                        steps(1, eval_reward=0.9, eval_reward_se=0.01)
                        + [{"step": 1, "reward": 0.9, "eval_reward": 0.1,
                            "eval_reward_se": 0.01}], CFG),
                    health.gradients: (steps(6, grad_norm=[1.0] * 5 + [99.0]), CFG)}[check])
    assert alarm.check in health.SHORT


# ---- end to end: induced failures raise their alarm, in the run's outputs ----------------------

def read_rows(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_a_learning_rate_100x_too_high_stops_at_step_0_saved_and_resumes(tmp_path):
    """The embedded default at 3e-2 (its learning rate 3e-4, x100), HEALTH="stop": the update alarm
    at step 0, the run saved and exit code 3; resumed, it goes on (the alarm fired already)."""
    run = [sys.executable, "ppo.py", "--MAX_STEPS=3", "--LEARNING_RATE=3e-2", "--HEALTH=stop",
           f"--OUTPUT_DIR={tmp_path}", "--SAMPLE_EVERY=100"]
    out = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    assert out.returncode == health.EXIT_CODE, text[-3000:]
    assert "health: update too large at step 0: approx_kl" in text
    assert "--LEARNING_RATE=0.0003 ... 0.003" in text and "Traceback" not in text
    assert [r["health"] for r in read_rows(tmp_path)] == [["update too large"]]
    assert os.path.exists(tmp_path / "checkpoint")
    title = plotting_title(tmp_path)
    assert "health: update too large (step 0)" in title
    out = subprocess.run(run + ["--RESUME=True"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert len(read_rows(tmp_path)) == 3
    assert "health: update too large on" in out.stdout  # the count at the end, not a stop


def plotting_title(out):
    """The suptitle plot_run gives ppo_metrics.png, from the same rows."""
    import plotting
    seen = []
    real = plotting.plot_metrics
    try:
        plotting.plot_metrics = lambda rows, panels, path, title, ncols: seen.append(title)
        plotting.plot_run(str(out))
    finally:
        plotting.plot_metrics = real
    return seen[0]


def test_a_constant_reward_raises_no_learning_signal(tiny, tmp_path, capsys):
    assert ppo.main(tiny_args(tiny, tmp_path, ALGORITHM="grpo", GROUP_SIZE=2, BATCH_SIZE=4,
                              MINI_BATCH_SIZE=None, PPO_EPOCHS=None, MAX_STEPS=5,
                              REWARD_MODEL="reward_fns:constant")) == 0
    assert "health: no learning signal at step 4: reward_std_in_group 0 = 0 for 5 steps" in \
        capsys.readouterr().out
    assert [r.get("health") for r in read_rows(tmp_path)] == [None] * 4 + [["no learning signal"]]


def test_health_off_checks_nothing(tiny, tmp_path, capsys):
    assert ppo.main(tiny_args(tiny, tmp_path, ALGORITHM="grpo", GROUP_SIZE=2, BATCH_SIZE=4,
                              MINI_BATCH_SIZE=None, PPO_EPOCHS=None, MAX_STEPS=5, HEALTH="off",
                              REWARD_MODEL="reward_fns:constant")) == 0
    assert "health: " not in capsys.readouterr().out
    assert not any("health" in r for r in read_rows(tmp_path))


def test_overlong_shaping_that_outweighs_the_reward_raises_length_collapse(tmp_path, capsys):
    """DAPO's soft length penalty over the whole response, 5x the reward's range, on the embedded
    task with 12 new tokens (half the responses reach the limit): the policy learns to stop at
    once."""
    assert ppo.main(["--ALGORITHM=dapo", "--GROUP_SIZE=4", "--BATCH_SIZE=8",
                     "--MAX_NEW_TOKENS=12", "--OVERLONG_BUFFER=11", "--OVERLONG_PENALTY=5.0",
                     "--LEARNING_RATE=2e-3", "--LR_SCHEDULE=constant", "--MAX_STEPS=30",
                     f"--OUTPUT_DIR={tmp_path}",
                     "--SAMPLE_EVERY=100", "--PLOT_EVERY=100"]) == 0
    assert "health: length collapse at step" in capsys.readouterr().out
    rows = read_rows(tmp_path)
    first = next(r for r in rows if "length collapse" in (r.get("health") or []))
    assert first["response_length"] < rows[0]["response_length"] / 4


def test_a_training_only_trick_raises_reward_hacking(tmp_path, capsys):
    """A reward that pays for positive replies on the training prompts and for negative ones on the
    held-out prompts: the training reward rises, the held-out one falls."""
    for src, name, held_out in (("prompts.jsonl", "train.jsonl", 0),
                                ("eval_prompts.jsonl", "eval.jsonl", 1)):
        with open(os.path.join(ROOT, "data", src)) as f, open(tmp_path / name, "w") as g:
            g.writelines(json.dumps({**json.loads(line), "held_out": held_out}) + "\n"
                         for line in f)
    out = tmp_path / "run"
    assert ppo.main(["--REWARD_MODEL=reward_fns:sentiment_on_training_prompts_only",
                     f"--DATASET={tmp_path / 'train.jsonl'}",
                     f"--EVAL_DATASET={tmp_path / 'eval.jsonl'}", "--EVAL_EVERY=5",
                     "--MAX_STEPS=10", f"--OUTPUT_DIR={out}", "--SAMPLE_EVERY=100",
                     "--PLOT_EVERY=100"]) == 0
    assert "health: reward hacking at step 5: eval_reward" in capsys.readouterr().out
    evals = [r for r in read_rows(out) if "eval_reward" in r]
    assert [r.get("health") for r in evals] == [None] + [["reward hacking"]] * 2
