"""What a run does around the algorithm: signals (Ctrl-C, SIGTERM), atomic writes of files and
folders, clearing a replaced run, the logs' lines, and OUTPUT_DIR's lock across torchrun's
processes."""
import errno
import json
import math
import os
import shutil
import signal
import time
from contextlib import contextmanager

import torch

from .preflight import REPLACED, ConfigError, RunLock, run_file
from .script import first_line


class Timings:
    """A step's clocks: seconds per phase (`with timings("update"): ...`, summed over the phase's
    calls) and since the start. On a GPU the clock waits for queued work first, so that each phase
    is charged with its own kernels."""

    def __init__(self, devices):
        self.cuda = any(d.type == "cuda" for d in devices.values())
        self.seconds, self.start = {}, self.now()

    def now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def elapsed(self):
        return self.now() - self.start

    @contextmanager
    def __call__(self, phase):
        t0 = self.now()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + self.now() - t0


class StopOnSignal:
    """Ctrl-C or SIGTERM during training: the first asks to stop after the step in progress
    (`signum` is set), a second raises Interrupted at once. The previous handlers come back on
    exit."""

    def __init__(self, log):
        self.log, self.signum, self.previous = log, 0, {}

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, self.handle)
                         for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def handle(self, signum, frame):
        if self.signum:  # a second signal: stop at once; the last checkpoint stays
            raise Interrupted(signum)
        self.signum = signum
        self.log(
            f"\n{signal.Signals(signum).name}: finishing this step, then saving (again to abort at "
            "once)")

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Interrupted(BaseException):
    """A second Ctrl-C or SIGTERM during training: stop at once, keeping the last checkpoint. A
    BaseException, so that no `except Exception` on the way (a reward function's, say) swallows
    it."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class SaveError(RuntimeError):
    """A checkpoint or the final folders could not be written (a full disk, say): the previous ones
    are kept. `full`: the disk (or quota) was full, so freeing space is the remedy."""

    def __init__(self, message, full=False):
        super().__init__(message)
        self.full = full


def write_folder(final, write):
    """write(tmp) fills final.tmp, which is then renamed into place: a kill at any instant leaves
    the old folder or the new one whole (between the two renames the old one waits as final.prev,
    which a resume also reads). A write that fails (ENOSPC, EDQUOT, EIO) removes its partial
    final.tmp and raises SaveError; the old folder stays."""
    tmp, prev = final + ".tmp", final + ".prev"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a save that was killed
    try:
        write(tmp)
    # torch.save reports a full disk as a RuntimeError ("unexpected pos"), not an OSError
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reason, full = write_failure(e, final)
        before = "the previous one is kept" if os.path.exists(final) else "there was none before"
        raise SaveError(f"could not write {final} ({reason}); {before}", full) from e
    if os.path.exists(final):
        shutil.rmtree(prev, ignore_errors=True)
        os.rename(final, prev)
    os.rename(tmp, final)
    shutil.rmtree(prev, ignore_errors=True)


def clear_run(out_dir):
    """Removes, as one act before a new run writes anything, every file an earlier run left in
    out_dir (the names of preflight.RUN_FILES; the user's other files stay): all move into
    out_dir/.replaced, which is then deleted. Checkpoints move first, so a kill on the way leaves at
    most the logs of a run without a checkpoint, which the next start refuses to resume and
    OVERWRITE clears."""
    trash = os.path.join(out_dir, REPLACED)
    names = sorted((n for n in os.listdir(out_dir) if run_file(n)
                    and n not in (RunLock.NAME, REPLACED)),
                   key=lambda n: (not n.startswith("checkpoint"), n != "metrics.jsonl", n))
    if names:
        os.makedirs(trash, exist_ok=True)
    for name in names:
        # left there by a kill while clearing
        shutil.rmtree(os.path.join(trash, name), ignore_errors=True)
        os.rename(os.path.join(out_dir, name), os.path.join(trash, name))
    shutil.rmtree(trash, ignore_errors=True)


def write_failure(error, path):
    """(why a write under path failed, in words: the OS's reason, else the writer's, with the free
    space left; whether the disk or quota was full: ENOSPC/EDQUOT, or at most 64 MiB left)."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else \
        (first_line(error) or type(error).__name__)
    said_full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    except OSError:
        return reason, said_full
    if "space" in reason or free > 2 ** 26:
        return reason, said_full
    return (f"{free / 2 ** 20:.1f} MiB free on that disk: most likely full; the writer said "
            f"{reason!r}", True)


def write_file(path, text):
    """Writes path.tmp.PID (this process's own name) and renames it into place: a reader, or a
    kill, never meets a half-written file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        reason, full = write_failure(e, path)
        raise SaveError(f"could not write {path} ({reason}); the previous one is kept", full) from e


def keep_rows_before(path, step):
    """Rewrites a .jsonl log keeping only the rows of steps before `step` (for a new run, step 0:
    none), and returns them. A half-written last line, left by a kill, goes too (read_metrics skips
    it)."""
    import plotting
    rows = [r for r in plotting.read_metrics(path) if isinstance(r.get("step"), int)
            and r["step"] < step] \
        if step and os.path.exists(path) else []
    write_file(path, "".join(map(json_line, rows)))
    return rows


def json_line(row):
    """A row of a .jsonl log as strict JSON: a NaN or infinite number (a skipped update's loss, a
    NaN reward) is written as null, which every JSON reader accepts (json.dumps would write NaN,
    which most refuse)."""
    def finite(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v
    return json.dumps({k: finite(v) for k, v in row.items()}, allow_nan=False) + "\n"


def format_samples(samples, step):
    lines = [f"--- samples at step {step} ---"]
    for s in samples:
        lines.append(f"[{s['reward']:+.3f}] {s['prompt']!r} -> {s['response']!r}")
    return "\n".join(lines)


def quiet_progress_bars():
    """The per-file "Loading weights" and "Generating split" bars of transformers and datasets drown
    the output."""
    import datasets
    import transformers
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def interrupt(signum, frame):
    """Ctrl-C or SIGTERM while starting: nothing is written yet, so stop at once (main says so in
    one line)."""
    raise Interrupted(signum)


def lock_output_dir(out_dir, ranks):
    """Rank 0 takes OUTPUT_DIR's run lock (preflight.RunLock) and every rank hears its refusal."""
    lock = error = None
    if ranks.writes:
        try:
            lock = RunLock(out_dir)
        except ConfigError as e:
            error = str(e)
    error = ranks.first_object(error)
    if error:
        raise ConfigError(error)
    return lock
