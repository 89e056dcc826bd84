"""Hostile-but-ordinary input, class by class (issue 10): each case asserts the exit code, one message and no
traceback, and that the files written before it are intact. Most are refused before any model loads and run
in-process in well under a second; the ones that need a real process (signals, locks, a full disk) run one."""
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import ppo
import preflight
from conftest import ROOT, tiny_args

TESTS = os.path.dirname(os.path.abspath(__file__))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, ROOT])}
UNREACHABLE = "http://127.0.0.1:9"  # the discard port on this machine: refused at once, as a hub with no network


def args_for(tiny, out, **overrides):
    settings = dict(REWARD_MODEL="reward_fns:word_count", MAX_STEPS=2, SAVE_EVERY=1, PLOT_EVERY=100)
    return tiny_args(tiny, out, **{**settings, **overrides})


def snapshot(folder):
    """{relative path: sha1} of every file under folder ({} if it does not exist), but the run lock, which
    holds the process id of whoever last took it."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in set(files) - {preflight.RunLock.NAME}:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha1(f.read()).hexdigest()
    return found


def assert_one_message(output, code, expected):
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output[-3000:]
    assert expected in lines[0] or __import__("re").search(expected, lines[0]), lines[0]


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """A finished 2-step run with a checkpoint after each step, to copy and damage."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert ppo.main(args_for(tiny, out)) == 0
    return out


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """Reward-function modules that cannot be imported, in a folder put on sys.path by the cases that use them."""
    d = tmp_path_factory.mktemp("modules")
    (d / "bad_syntax.py").write_text("def score(prompts, responses)\n    return [0.0]\n")
    (d / "raises_at_import.py").write_text("raise RuntimeError('no GPU for the judge')\n")
    (d / "exits_at_import.py").write_text("import sys\nsys.exit(4)\n")
    return d


# ---- the cases -------------------------------------------------------------------------------------------------
# Each prepare(c) sets up what the case needs (c.out is the OUTPUT_DIR, c.finished a finished run to copy) and
# returns the setting overrides; the case then expects (exit code, text of the one error line).
def offline(c):
    c.monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    c.monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)


def unreachable(c):
    c.monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", UNREACHABLE)


def copy_run(c):
    shutil.copytree(c.finished, c.out)


def damage(path, how):
    def prepare(c):
        copy_run(c)
        target = os.path.join(c.out, path)
        if how == "truncate":
            with open(target, "r+b") as f:
                f.truncate(os.path.getsize(target) // 2)
        elif how == "garbage":
            with open(target, "wb") as f:
                f.write(os.urandom(4096))
        elif how == "remove":
            shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
        return {"RESUME": True, "MAX_STEPS": 3}
    return prepare


def pickled_code(c):
    """A trainer_state.pt whose unpickling would run code: it must not run."""
    copy_run(c)
    marker = c.tmp / "ran"
    state = {"counters": {}, "rng": {}, "optimizers": [], "schedulers": [], "payload": Payload(str(marker))}
    torch.save(state, os.path.join(c.out, "checkpoint", "trainer_state.pt"))
    c.after = lambda: not marker.exists()
    return {"RESUME": True, "MAX_STEPS": 3}


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def numpy_state(c):
    """What the previous version wrote: NumPy's random state as a pickled ndarray."""
    copy_run(c)
    path = os.path.join(c.out, "checkpoint", "trainer_state.pt")
    state = torch.load(path, weights_only=True)
    import numpy as np
    state["rng"]["numpy"] = np.random.get_state()
    torch.save(state, path)
    return {"RESUME": True, "MAX_STEPS": 3}


def dead_run(c):
    """A run that died before its first checkpoint: logs, no checkpoint."""
    c.out.mkdir()
    (c.out / "metrics.jsonl").write_text(json.dumps({"step": 0, "reward": 1.0}) + "\n")
    (c.out / "run.lock").write_text("999999 elsewhere\n")
    return {}


def with_modules(c):
    c.monkeypatch.syspath_prepend(str(c.modules))


def edited_config(name, value):
    def prepare(c):
        import config
        c.monkeypatch.setattr(config, name, value)
        return {}
    return prepare


def chain(*steps, **overrides):
    def prepare(c):
        for step in steps:
            step(c)
        return overrides
    return prepare


class C:  # one case
    def __init__(self, cls, name, prepare, code, message, **overrides):
        self.cls, self.name, self.prepare, self.code, self.message, self.overrides = (
            cls, name, prepare, code, message, overrides)


QWEN, DEBERTA = "Qwen/Qwen3-0.6B", "OpenAssistant/reward-model-deberta-v3-large-v2"
CASES = [
    # 1. hub ids are hub ids: not local, so the hub; unreachable or offline -> one line naming setting and id
    C(1, "seed-actor-offline", offline, 2, f"ACTOR_MODEL='{QWEN}' is neither a local folder nor in the hub cache, "
      f"and HF_HUB_OFFLINE is set", ACTOR_MODEL=QWEN, CRITIC_MODEL=QWEN),
    C(1, "seed-reward-unreachable", unreachable, 2, f"REWARD_MODEL='{DEBERTA}' is neither a local folder nor "
      f"reachable on the hub ({UNREACHABLE}", REWARD_MODEL=DEBERTA),
    C(1, "bare-name-offline", offline, 2, "ACTOR_MODEL='gpt2' is neither a local folder nor in the hub cache",
      ACTOR_MODEL="gpt2"),
    C(1, "critic-unreachable", unreachable, 2, "CRITIC_MODEL='someone/critic' is neither a local folder nor "
      "reachable", CRITIC_MODEL="someone/critic"),
    C(1, "dataset-unreachable", unreachable, 2, "DATASET='someone/prompts' is neither a local file or folder nor "
      "reachable on the hub", DATASET="someone/prompts"),
    C(1, "dataset-offline", offline, 2, "DATASET='someone/prompts' is neither a local file or folder nor loadable "
      "from the hub", DATASET="someone/prompts"),
    C(1, "a-path-is-not-sent-to-the-hub", unreachable, 2, "ACTOR_MODEL='./models/qwen': no such folder",
      ACTOR_MODEL="./models/qwen"),
    C(1, "deep-path", unreachable, 2, "REWARD_MODEL='runs/rm/final': no such folder", REWARD_MODEL="runs/rm/final"),
    # 2. typed settings: wrong type or out of range -> one line naming the setting and what it accepts
    C(2, "overwrite-false", copy_run, 2, "already holds a run", OVERWRITE="false"),
    C(2, "overwrite-FALSE", copy_run, 2, "already holds a run", OVERWRITE="FALSE"),
    C(2, "lr-abc", None, 2, "LEARNING_RATE must be a number >= 0, got 'abc'", LEARNING_RATE="abc"),
    C(2, "entropy-abc", None, 2, "ENTROPY_COEF must be a number, got 'abc'", ENTROPY_COEF="abc"),
    C(2, "num-samples-abc", None, 2, "NUM_SAMPLES must be an integer >= 0, got 'abc'", NUM_SAMPLES="abc"),
    C(2, "grad-norm-negative", None, 2, "MAX_GRAD_NORM must be a number > 0 or None, got -1.0", MAX_GRAD_NORM=-1),
    C(2, "kl-horizon-0", None, 2, "KL_HORIZON must be an integer >= 1, got 0", KL_HORIZON=0),
    C(2, "seed-negative", None, 2, "SEED must be an integer in [0, 4294967295], got -1", SEED=-1),
    C(2, "lr-negative", None, 2, "LEARNING_RATE must be a number >= 0, got -1e-05", LEARNING_RATE=-1e-5),
    C(2, "temperature-nan", None, 2, "TEMPERATURE must be a number > 0, got nan", TEMPERATURE="nan"),
    C(2, "batch-size-float", None, 2, "BATCH_SIZE must be an integer >= 1, got '8.5'", BATCH_SIZE=8.5),
    C(2, "debug-maybe", None, 2, "DEBUG must be True or False, got 'maybe'", DEBUG="maybe"),
    C(2, "algorithm-case", None, 2, "ALGORITHM must be one of 'ppo', 'grpo', 'dapo', 'reinforce', got 'PPO'",
      ALGORITHM="PPO"),
    C(2, "lora-targets-missing", None, 2, "LORA_TARGET_MODULES names ['query_key_value'], which ACTOR_MODEL=",
      LORA_RANK=4, LORA_TARGET_MODULES="query_key_value"),
    C(2, "config-py-edited", edited_config("GAMMA", "1.0"), 2, "GAMMA must be a number in [0, 1], got '1.0'"),
    C(2, "chat-template-1", None, 2, "CHAT_TEMPLATE must be one of 'auto', True, False, got '1'", CHAT_TEMPLATE=1),
    # 3. one run per folder; a run that died before its first checkpoint is not a dead end
    C(3, "dead-run-restarted", dead_run, 2, "holds the logs of a run that stopped before its first checkpoint, so "
      "it cannot be resumed: replace it with --OVERWRITE=True"),
    C(3, "dead-run-resumed", dead_run, 2, "stopped before its first checkpoint (one is written every SAVE_EVERY "
      "steps), so there is nothing to resume: start it again with --OVERWRITE=True", RESUME=True),
    C(3, "resume-and-overwrite", copy_run, 2, "RESUME=True and OVERWRITE=True contradict each other", RESUME=True,
      OVERWRITE=True),
    C(3, "resume-changed-settings", copy_run, 2, "LEARNING_RATE 0.0003 -> 0.001", RESUME=True, MAX_STEPS=3,
      LEARNING_RATE=1e-3),
    # 4. the output folder, checked before loading
    C(4, "output-is-a-file", lambda c: c.out.write_text("notes\n") and {}, 2, "is a file, not a folder"),
    C(4, "output-under-a-file", None, 2, "which is a file, not a folder", OUTPUT_DIR="{tiny_prompts}/run"),
    C(4, "output-name-too-long", None, 2, "cannot be a folder: File name too long", OUTPUT_DIR="{tmp}/" + "x" * 300),
    C(4, "output-is-the-code", None, 2, "is the code's folder", OUTPUT_DIR=ROOT),
    C(4, "output-is-the-actor", None, 2, "is ACTOR_MODEL itself", OUTPUT_DIR="{tiny_policy}"),
    # 5. damaged checkpoints, found before models load; the spelling of OUTPUT_DIR is no setting
    C(5, "state-truncated", damage("checkpoint/trainer_state.pt", "truncate"), 2, "trainer_state.pt is damaged"),
    C(5, "state-garbage", damage("checkpoint/trainer_state.pt", "garbage"), 2, "trainer_state.pt is damaged"),
    C(5, "weights-truncated", damage("checkpoint/policy/model.safetensors", "truncate"), 2,
      "model.safetensors is truncated"),
    C(5, "weights-garbage", damage("checkpoint/critic/model.safetensors", "garbage"), 2,
      "checkpoint/critic/: model.safetensors is"),
    C(5, "critic-missing", damage("checkpoint/critic", "remove"), 2, "checkpoint/critic/ is missing"),
    C(5, "settings-garbage", damage("checkpoint/settings.json", "garbage"), 2, "settings.json is damaged"),
    C(5, "state-missing", damage("checkpoint/trainer_state.pt", "remove"), 2, "trainer_state.pt is missing"),
    # 6. reward functions: any error while importing or on the test call -> one line, exit 2
    C(6, "syntax-error", with_modules, 2, "cannot import bad_syntax (SyntaxError",
      REWARD_MODEL="bad_syntax:score"),
    C(6, "raises-at-import", with_modules, 2, "cannot import raises_at_import (RuntimeError: no GPU for the "
      "judge)", REWARD_MODEL="raises_at_import:score"),
    C(6, "exits-at-import", with_modules, 2, "cannot import exits_at_import (SystemExit: 4)",
      REWARD_MODEL="exits_at_import:score"),
    C(6, "no-module", None, 2, "write a reward function as module:function", REWARD_MODEL=":score"),
    C(6, "relative-module", None, 2, "write a reward function as module:function", REWARD_MODEL=".reward_fns:score"),
    C(6, "no-function-name", None, 2, "write a reward function as module:function", REWARD_MODEL="reward_fns:"),
    C(6, "no-such-function", None, 2, "module reward_fns (", REWARD_MODEL="reward_fns:nope"),
    C(6, "exits-on-test-call", None, 2, "failed on a test call: reward function exits raised SystemExit",
      REWARD_MODEL="reward_fns:exits"),
    C(6, "exits-in-training", None, 1, "reward function exits_after_probe raised SystemExit",
      REWARD_MODEL="reward_fns:exits_after_probe"),
    C(6, "interrupt-in-training", None, 1, "reward function interrupts_after_probe raised KeyboardInterrupt",
      REWARD_MODEL="reward_fns:interrupts_after_probe"),
    # 9. checkpoints are data: anything else is refused, unread
    C(9, "pickled-code", pickled_code, 2, "holds Python objects besides tensors and plain values"),
    C(9, "old-numpy-state", numpy_state, 2, "holds Python objects besides tensors and plain values"),
    C(9, "state-missing-keys", lambda c: (copy_run(c), torch.save({"counters": {}}, os.path.join(
        c.out, "checkpoint", "trainer_state.pt")), {"RESUME": True, "MAX_STEPS": 3})[-1], 2,
      "trainer_state.pt is damaged (no optimizers, rng, schedulers)"),
]


class Context:
    def __init__(self, tiny, tmp, finished, modules, monkeypatch):
        self.tiny, self.tmp, self.out, self.finished, self.modules = tiny, tmp, tmp / "run", finished, modules
        self.monkeypatch, self.after = monkeypatch, lambda: True


@pytest.mark.parametrize("case", CASES, ids=[f"{c.cls}-{c.name}" for c in CASES])
def test_hostile_input(case, tiny, tmp_path, finished, modules, monkeypatch, capsys):
    c = Context(tiny, tmp_path, finished, modules, monkeypatch)
    overrides = dict((case.prepare(c) if case.prepare else None) or {})
    names = {"tmp": str(tmp_path), "tiny_prompts": tiny["prompts"], "tiny_policy": tiny["policy"]}
    overrides.update({k: v.format(**names) if isinstance(v, str) else v for k, v in case.overrides.items()})
    before = {name: snapshot(path) for name, path in (("out", c.out), ("tiny", tiny["dir"]))}
    code = ppo.main(args_for(tiny, c.out, **overrides))
    output = "".join(capsys.readouterr())
    assert code == case.code, output[-3000:]
    assert_one_message(output, code, case.message)
    if code == 2:  # refused: nothing written, nothing changed
        assert snapshot(c.out) == before["out"]
    else:  # a fault in training: the run is saved, the step that failed rolled back
        assert preflight.checkpoint_problem(str(c.out / "checkpoint"), ["policy", "critic"]) is None
    assert snapshot(tiny["dir"]) == before["tiny"]
    assert c.after()


def test_the_table_covers_every_class_three_times():
    counts = {k: sum(c.cls == k for c in CASES) for k in range(1, 10)}
    assert all(counts[k] >= 3 for k in (1, 2, 3, 4, 5, 6, 9)), counts  # 7 and 8 need processes: below
    assert len(CASES) >= 40


# ---- 3. one run per folder, with real processes ----------------------------------------------------------------
HOLD = ("import sys, time, preflight; lock = preflight.RunLock(sys.argv[1]); print('locked', flush=True); "
        "time.sleep(300)")


def test_a_busy_folder_is_refused_naming_the_holder_and_freed_when_it_dies(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(out)
        assert ppo.main(args_for(tiny, out)) == 2
        assert_one_message("".join(capsys.readouterr()), 2,
                           f"is in use by a run that is still going (process {holder.pid} on ")
        assert snapshot(out) == before and os.listdir(out) == ["run.lock"]
    finally:
        holder.kill()
        holder.wait()
    assert ppo.main(args_for(tiny, out, MAX_STEPS=1)) == 0  # the kernel dropped the dead holder's lock


def test_two_runs_started_together_into_one_folder_do_not_mix(tiny, tmp_path):
    out = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "ppo.py", *args_for(tiny, out, MAX_STEPS=3)], cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outputs
    refused = outputs[codes.index(2)]
    assert "Traceback" not in refused and ("is in use by a run that is still going" in refused
                                           or "already holds a run" in refused), refused
    with open(out / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [0, 1, 2]


def test_a_folder_whose_run_died_at_once_is_free(tiny, tmp_path):
    """A run killed before its first step leaves run.lock, config.json and an empty metrics.jsonl: no run."""
    out = tmp_path / "run"
    out.mkdir()
    for name, text in (("run.lock", "12345 elsewhere\n"), ("config.json", "{}"), ("metrics.jsonl", "")):
        (out / name).write_text(text)
    assert preflight.check_output_dir(ppo.load_config(args_for(tiny, out))) is None


# ---- 7. a full disk, a kill while saving the final folders -----------------------------------------------------
def can_mount():
    return shutil.which("unshare") and subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True).returncode == 0


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(folder) for f in files)


@pytest.mark.skipif(not can_mount(), reason="needs a private mount namespace (root, unshare) for a small tmpfs")
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tiny, tmp_path, finished):
    """A real ENOSPC: OUTPUT_DIR on a tmpfs that holds one checkpoint and a half, so the second save fails."""
    size = int(folder_bytes(finished / "checkpoint") * 1.5)
    mnt, copy = tmp_path / "disk", tmp_path / "copy"
    mnt.mkdir()
    args = " ".join(f"'{a}'" for a in args_for(tiny, mnt / "run", MAX_STEPS=4))
    script = (f"mount -t tmpfs -o size={size} tmpfs {mnt} && {sys.executable} ppo.py {args}; code=$?; "
              f"cp -a {mnt}/run {copy}; exit $code")
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert_one_message(out.stdout + out.stderr, 1,
                       r"checkpoint \(.* MiB free on that disk: most likely full; .*\); the previous one is kept")
    assert preflight.checkpoint_problem(str(copy / "checkpoint"), ["policy", "critic"]) is None
    assert not (copy / "checkpoint.tmp").exists()


@pytest.mark.skipif(not can_mount(), reason="needs a private mount namespace (root, unshare) for a tmpfs")
def test_a_read_only_output_folder_is_refused_before_loading(tiny, tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    args = " ".join(f"'{a}'" for a in args_for(tiny, mnt / "run"))
    script = f"mount -t tmpfs -o ro,size=64k tmpfs {mnt} && exec {sys.executable} ppo.py {args}"
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert_one_message(out.stderr, 2, f"cannot be written ('{mnt}': a read-only file system)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits (see the read-only case)")
def test_a_folder_this_user_cannot_write_is_refused(tiny, tmp_path, capsys):
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o555)
    assert ppo.main(args_for(tiny, parent / "run")) == 2
    assert_one_message("".join(capsys.readouterr()), 2, "cannot be written (")


KILL_IN_FINAL_SAVE = """
import os, signal, sys, transformers
import ppo
real = transformers.PreTrainedModel.save_pretrained
def save_pretrained(self, path, *a, **k):  # dies half-way through writing the final policy/
    real(self, path, *a, **k)
    if str(path).endswith(os.sep + "policy.tmp"):
        with open(os.path.join(path, "model.safetensors"), "r+b") as f:
            f.truncate(100)
        os.kill(os.getpid(), signal.SIGKILL)
transformers.PreTrainedModel.save_pretrained = save_pretrained
sys.exit(ppo.main(sys.argv[1:]))
"""


def test_a_kill_while_writing_the_final_policy_leaves_the_previous_one_loadable(tiny, tmp_path, finished):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = snapshot(out / "policy")
    proc = subprocess.run([sys.executable, "-c", KILL_IN_FINAL_SAVE, *args_for(tiny, out, MAX_STEPS=3, RESUME=True)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert snapshot(out / "policy") == before  # the previous policy/, whole
    ppo.load_causal_lm(str(out / "policy"), torch.device("cpu"), torch.float32)
    assert preflight.weights_problem(str(out / "policy.tmp"))  # the half-written one stayed aside


def test_no_space_for_the_final_policy_keeps_the_previous_one(tiny, tmp_path, finished, monkeypatch, capsys):
    import transformers
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = snapshot(out / "policy")
    real = transformers.PreTrainedModel.save_pretrained

    def save_pretrained(self, path, *args, **kwargs):
        if str(path).endswith(os.sep + "policy.tmp"):
            os.makedirs(path, exist_ok=True)
            (open(os.path.join(path, "model.safetensors"), "wb")).write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", save_pretrained)
    assert ppo.main(args_for(tiny, out, MAX_STEPS=3, RESUME=True)) == 1
    assert_one_message("".join(capsys.readouterr()), 1, "policy (No space left on device); the previous one is kept")
    assert snapshot(out / "policy") == before and not (out / "policy.tmp").exists()


# ---- 8. signals --------------------------------------------------------------------------------------------------
SLOW_LOAD = """
import sys, time
import ppo
real = ppo.load_causal_lm
def load_causal_lm(*a, **k):
    print("LOADING", flush=True)
    time.sleep(60)
    return real(*a, **k)
ppo.load_causal_lm = load_causal_lm
sys.exit(ppo.main(sys.argv[1:]))
"""


def test_ctrl_c_while_loading_says_one_line_and_writes_nothing(tiny, tmp_path):
    sig = signal.SIGINT
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-u", "-c", SLOW_LOAD, *args_for(tiny, out)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.strip() == "LOADING":
            break
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert_one_message(stderr, proc.returncode, f"{signal.Signals(sig).name} while starting; nothing was written")
    assert not out.exists()


def test_a_second_sigterm_stops_at_once_keeping_the_last_checkpoint(tiny, tmp_path):
    sig = signal.SIGTERM  # a second Ctrl-C takes the same path (request_stop)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "ppo.py", *args_for(tiny, out, REWARD_MODEL="reward_fns:slow",
                                                                  MAX_STEPS=30)],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 2) \
            and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(sig)
    time.sleep(0.3)
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + sig, output[-3000:]
    assert "Traceback" not in output and f"stopped at once by a second {signal.Signals(sig).name}" in output
    assert preflight.checkpoint_problem(str(out / "checkpoint"), ["policy", "critic"]) is None


# ---- 1. hub ids, beyond the table --------------------------------------------------------------------------------
def hub_cache(tiny, root, repo_id):
    """The tiny policy laid out as the hub client caches a download: what a user who ran once with a network has."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(tiny["policy"], repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return root


def test_a_hub_id_goes_to_from_pretrained_and_loads_from_the_hub_cache_offline(tiny, tmp_path):
    cache = hub_cache(tiny, tmp_path / "hub", "someone/tiny-qwen3")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "ppo.py", *args_for(tiny, out, ACTOR_MODEL="someone/tiny-qwen3",
                                                                CRITIC_MODEL="someone/tiny-qwen3", MAX_STEPS=1)],
                          cwd=ROOT, env={**ENV, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "policy" / "model.safetensors").exists()


def test_the_seed_configuration_offline_is_one_line_in_seconds(tmp_path):
    """The README's own example with HF_HUB_OFFLINE=1 and with no hub at all (the table has both in-process):
    one line naming the first setting that needs the hub, without the hub client's half a minute of retries."""
    seed = ["--ACTOR_MODEL=Qwen/Qwen3-0.6B", "--CRITIC_MODEL=Qwen/Qwen3-0.6B",
            "--REWARD_MODEL=OpenAssistant/reward-model-deberta-v3-large-v2", f"--OUTPUT_DIR={tmp_path / 'run'}"]
    for env in ({"HF_ENDPOINT": UNREACHABLE},):  # a real process, the hub client's own settings read at import
        t0 = time.time()
        proc = subprocess.run([sys.executable, "ppo.py", *seed], cwd=ROOT, env={**ENV, **env}, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 2
        assert_one_message(proc.stderr, 2, "ACTOR_MODEL='Qwen/Qwen3-0.6B' is neither a local folder nor ")
        assert time.time() - t0 < 25  # the retries alone take 29 s; the refusal is the start-up's few seconds
    assert not (tmp_path / "run").exists()


def test_a_local_folder_named_like_a_hub_id_loads_as_a_folder(tiny, tmp_path, monkeypatch):
    shutil.copytree(tiny["policy"], tmp_path / "org" / "name")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", UNREACHABLE)  # the hub is never asked
    assert preflight.load_model_config("ACTOR_MODEL", "org/name").model_type == "qwen3"


# ---- 2. typed settings, beyond the table -------------------------------------------------------------------------
def test_settings_are_read_by_their_type():
    cfg = ppo.load_config(["--OVERWRITE=false", "--RESUME=FALSE", "--DEBUG=True", "--KL_TARGET=none",
                           "--DYNAMIC_SAMPLING=None", "--CHAT_TEMPLATE=false", "--CRITIC_LEARNING_RATE=0",
                           "--LORA_TARGET_MODULES=q_proj,v_proj", "--MAX_GRAD_NORM=None", "--OUTPUT_DIR=None"])
    assert cfg.OVERWRITE is False and cfg.RESUME is False and cfg.DEBUG is True and cfg.KL_TARGET is None
    assert cfg.DYNAMIC_SAMPLING is False  # None: the algorithm's default, resolved
    assert cfg.CHAT_TEMPLATE is False and cfg.CRITIC_LEARNING_RATE == 0.0  # a 0 that means 0 stays 0
    assert cfg.LORA_TARGET_MODULES == ["q_proj", "v_proj"] and cfg.MAX_GRAD_NORM is None
    assert cfg.OUTPUT_DIR == "None"  # a folder name: OUTPUT_DIR takes no None
    assert ppo.load_config(["--LORA_TARGET_MODULES=['k_proj']"]).LORA_TARGET_MODULES == ["k_proj"]


def test_a_critic_learning_rate_of_0_leaves_the_critic_as_it_was(tiny, tmp_path):
    trainer = ppo.PPOTrainer(ppo.load_config(args_for(tiny, tmp_path / "run", CRITIC_LEARNING_RATE=0)),
                             log=lambda *a: None)
    before = [p.detach().clone() for p in trainer.critic.parameters()]
    trainer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.critic.parameters()))


def test_every_config_constant_has_a_kind_and_every_kind_a_constant():
    import config
    names = {k for k in vars(config) if k.isupper() and not k.startswith("_")}
    assert names == set(preflight.SETTINGS)
    for name in names:  # and every default is valid
        assert preflight.SETTINGS[name].problem(name, getattr(config, name)) is None, name


def test_debug_shows_the_traceback_of_a_refusal_even_while_parsing():
    with pytest.raises(preflight.ConfigError, match="LEARNING_RATE must be"):
        ppo.main(["--LEARNING_RATE=abc", "--DEBUG=True"])


# ---- 5. damaged checkpoints, beyond the table ---------------------------------------------------------------------
def test_a_damaged_checkpoint_falls_back_to_a_whole_prev_in_a_moved_run(tiny, tmp_path, finished, capsys):
    out = tmp_path / "moved"  # a copy of the run somewhere else, resumed with a trailing slash
    shutil.copytree(finished, out)
    shutil.copytree(out / "checkpoint", out / "checkpoint.prev")
    (out / "checkpoint" / "trainer_state.pt").write_bytes(b"garbage")
    assert ppo.main(args_for(tiny, str(out) + "/", MAX_STEPS=3, RESUME=True)) == 0
    output = "".join(capsys.readouterr())
    assert "trainer_state.pt is damaged" in output and "checkpoint.prev instead" in output
    with open(out / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [0, 1, 2]
    assert preflight.checkpoint_problem(str(out / "checkpoint"), ["policy", "critic"]) is None
    assert not (out / "checkpoint.prev").exists()


def test_a_module_named_as_reward_model_without_its_function_says_so(tiny, tmp_path, capsys):
    assert ppo.main(args_for(tiny, tmp_path / "run", REWARD_MODEL="reward_fns")) == 2
    assert_one_message("".join(capsys.readouterr()), 2, "is a Python module here, not a model: name its reward "
                                                        "function as reward_fns:FUNCTION")
