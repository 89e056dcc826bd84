"""Runs that survive: exact resume after SIGKILL, atomic checkpoints, Ctrl-C/SIGTERM, the non-finite
guard, a failing reward function, and refusing to mix runs in one OUTPUT_DIR."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import ppo
from machinery.script import Refusal
from machinery import models
from machinery import checkpoints
import reward_fns
from conftest import ROOT, load_config, tiny_args

TESTS = os.path.dirname(os.path.abspath(__file__))
TIMING = {"elapsed", "step_time", "time_generate", "time_reward", "time_forward", "time_update",
          "tokens_per_sec"}


def fault_args(tiny, out, **overrides):
    settings = dict(REWARD_MODEL="reward_fns:sentiment_with_faults", MAX_STEPS=6, SAVE_EVERY=2,
                    PLOT_EVERY=100, KL_TARGET=1.0)
    return tiny_args(tiny, out, **{**settings, **overrides})


def run_cli(args, env=None, wrapper=None):
    """`python ppo.py ARGS` (or a wrapper script that patches something first) with tests/
    importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, ROOT]), **(env or {})}
    cmd = [sys.executable, "-c", wrapper, *args] if wrapper else [sys.executable, "ppo.py", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def rows(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_run(a, b):
    ra, rb = rows(a), rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == list(range(len(ra)))
    for x, y in zip(ra, rb):
        assert set(x) == set(y)
        for k in set(x) - TIMING:
            if isinstance(x[k], list):  # the health alarms' names: a resumed run fires the same
                assert x[k] == y[k], (x["step"], k)
            else:
                assert x[k] == pytest.approx(y[k], rel=1e-4, abs=1e-4), (x["step"], k)


def saved_step(path):
    return torch.load(
        os.path.join(path, "trainer_state.pt"), weights_only=False)["counters"]["step_count"]


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    reward_fns.reset_faults()
    assert ppo.main(fault_args(tiny, out)) == 0
    return out


def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny, tmp_path, uninterrupted):
    # Reward calls: 1 is the start-up probe, step k is call k + 2. Checkpoints follow steps 1 and 3
    # (SAVE_EVERY=2), so a SIGKILL at call 6, inside step 4, loses step 4 and keeps the checkpoint
    # of step 3.
    killed = run_cli(fault_args(tiny, tmp_path), env={"PPO_TEST_KILL_AT": "6"})
    assert killed.returncode == -signal.SIGKILL
    assert [r["step"] for r in rows(tmp_path)] == [0, 1, 2, 3]
    assert saved_step(os.path.join(tmp_path, "checkpoint")) == 4
    reward_fns.reset_faults()
    assert ppo.main(fault_args(tiny, tmp_path, RESUME=True)) == 0
    assert_same_run(uninterrupted, tmp_path)
    a = torch.load(os.path.join(uninterrupted, "checkpoint", "trainer_state.pt"),
                   weights_only=False)
    b = torch.load(os.path.join(tmp_path, "checkpoint", "trainer_state.pt"), weights_only=False)
    assert a["kl_coef"] == pytest.approx(b["kl_coef"]) and a["counters"] == b["counters"]


KILL_WHILE_SAVING = """
import os, signal, sys, torch
import ppo
where, seen = sys.argv.pop(1), []
real_save, real_rename = torch.save, os.rename
# the second checkpoint dies while its trainer_state.pt is being written
def save(obj, path, *a, **k):
    if str(path).endswith("trainer_state.pt"):
        seen.append(path)
        if where == "write" and len(seen) == 2:
            with open(path, "wb") as f:
                f.write(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, path, *a, **k)
# ... or between its two renames, after the old checkpoint became checkpoint.prev
def rename(src, dst):
    if where == "rename" and str(src).endswith("checkpoint.tmp") and len(seen) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst)
torch.save, os.rename = save, rename
sys.exit(ppo.main(sys.argv[1:]))
"""


# the kill between the renames is slow (15 s): a resume from checkpoint.prev runs in test_hostile
@pytest.mark.parametrize("where,survivor", [("write", "checkpoint"), pytest.param(
    "rename", "checkpoint.prev", marks=pytest.mark.slow)])
def test_a_kill_while_saving_leaves_the_previous_checkpoint_whole(
        tiny, tmp_path, uninterrupted, where, survivor):
    killed = run_cli([where, *fault_args(tiny, tmp_path)], wrapper=KILL_WHILE_SAVING)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [n for n in checkpoints.CHECKPOINTS if (tmp_path / n).is_dir()] == [survivor]
    assert saved_step(os.path.join(tmp_path, survivor)) == 2  # the first checkpoint, whole
    reward_fns.reset_faults()
    assert ppo.main(fault_args(tiny, tmp_path, RESUME=True)) == 0
    assert_same_run(uninterrupted, tmp_path)
    assert not os.path.exists(os.path.join(tmp_path, "checkpoint.tmp"))
    assert not os.path.exists(os.path.join(tmp_path, "checkpoint.prev"))


# SIGTERM takes the same handler: test_hostile sends it twice
@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_ctrl_c_and_sigterm_finish_the_step_save_and_say_how_to_resume(tiny, tmp_path, sig):
    args = fault_args(tiny, tmp_path, MAX_STEPS=40)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, ROOT])}
    proc = subprocess.Popen([sys.executable, "ppo.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 120
    while not (
        metrics.exists() and metrics.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + sig, output[-2000:]
    done = rows(tmp_path)
    assert saved_step(os.path.join(tmp_path, "checkpoint")) == len(done) < 40
    assert "--RESUME=True" in output and f"stopped by {signal.Signals(sig).name}" in output
    # The progress bar redraws its line with \r: the message that ends the run starts a line (\n) of
    # its own.
    assert any(line.startswith(f"stopped by {signal.Signals(sig).name}")
               for line in output.split("\n")), output
    assert (tmp_path / "ppo_metrics.png").exists()
    reward_fns.reset_faults()
    assert ppo.main(fault_args(tiny, tmp_path, MAX_STEPS=len(done) + 2, RESUME=True)) == 0
    assert [r["step"] for r in rows(tmp_path)] == list(range(len(done) + 2))


def test_non_finite_rewards_skip_updates_then_stop_after_saving(tiny, tmp_path, capsys):
    start = [p.detach().clone()
             for p in models.load_causal_lm(tiny["policy"], torch.device("cpu"), torch.float32)
             .parameters()]
    assert ppo.main(tiny_args(tiny, tmp_path, REWARD_MODEL="reward_fns:nan_after_probe",
                              MAX_STEPS=10)) == 1
    out = capsys.readouterr()
    assert "3 updates in a row were skipped for NaN/inf" in out.out + out.err
    assert [r["skipped_updates"] for r in rows(tmp_path)] == [1, 2, 3]
    # the health alarm: said once, at the first, and on every such step's row
    assert (out.out + out.err).count("health: non-finite values at step 0: skipped_updates") == 1
    assert [r["health"] for r in rows(tmp_path)] == [["non-finite values"]] * 3
    saved = models.load_causal_lm(os.path.join(tmp_path, "checkpoint", "policy"),
                                  torch.device("cpu"), torch.float32)
    for a, b in zip(start, saved.parameters()):
        assert torch.equal(a, b)  # untouched, and so finite


def test_a_non_finite_gradient_skips_only_that_minibatch(tiny, tmp_path, monkeypatch):
    # 2 minibatches
    trainer = ppo.PPOTrainer(load_config(tiny_args(tiny, tmp_path, PPO_EPOCHS=1)))
    real, calls = ppo.policy_loss, []

    def nan_once(*args, **kwargs):
        loss, clipped, ratio = real(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 1 else loss), clipped, ratio

    monkeypatch.setattr(ppo, "policy_loss", nan_once)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    metrics, _ = trainer.step()
    # the second minibatch went through
    assert metrics["skipped_updates"] == 1 and trainer.skipped_in_a_row == 0
    params = list(trainer.policy.parameters())
    assert all(torch.isfinite(p).all() for p in params)
    assert any(not torch.equal(a, b) for a, b in zip(before, params))


def test_a_reward_function_that_raises_stops_the_run_after_saving(
        tiny, tmp_path, capsys, monkeypatch, uninterrupted):
    reward_fns.reset_faults()
    monkeypatch.setenv("PPO_TEST_RAISE_AT", "5")  # inside step 3
    assert ppo.main(fault_args(tiny, tmp_path)) == 1
    err = capsys.readouterr().out
    assert ("reward function sentiment_with_faults raised ConnectionError: reward server went away"
            in err)
    assert "first prompt of the batch: '" in err and "--RESUME=True" in err
    # steps 0-2 kept, step 3 rolled back
    assert saved_step(os.path.join(tmp_path, "checkpoint")) == 3
    monkeypatch.delenv("PPO_TEST_RAISE_AT")
    reward_fns.reset_faults()
    assert ppo.main(fault_args(tiny, tmp_path, RESUME=True)) == 0
    assert_same_run(uninterrupted, tmp_path)


def test_one_output_dir_holds_one_run(tiny, tmp_path, capsys):
    assert ppo.main(tiny_args(tiny, tmp_path, MAX_STEPS=1)) == 0
    assert ppo.main(tiny_args(tiny, tmp_path, MAX_STEPS=1)) == 2
    assert "already holds a run: continue it with --RESUME=True" in capsys.readouterr().err
    assert ppo.main(tiny_args(tiny, tmp_path, MAX_STEPS=2, RESUME=True, LEARNING_RATE=1e-3)) == 2
    assert "LEARNING_RATE 0.0003 -> 0.001" in capsys.readouterr().err
    # a longer run continues
    assert ppo.main(tiny_args(tiny, tmp_path, MAX_STEPS=2, RESUME=True)) == 0
    assert [r["step"] for r in rows(tmp_path)] == [0, 1]
    assert ppo.main(tiny_args(tiny, tmp_path, MAX_STEPS=1, OVERWRITE=True)) == 0
    assert [r["step"] for r in rows(tmp_path)] == [0]
    empty = tmp_path / "empty"
    assert ppo.main(tiny_args(tiny, empty, RESUME=True)) == 2
    assert "holds no checkpoint" in capsys.readouterr().err and not empty.exists()
    # DEBUG=True shows the traceback instead of the one-line message
    with pytest.raises(Refusal):
        ppo.main(tiny_args(tiny, empty, RESUME=True, DEBUG=True))
