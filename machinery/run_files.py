"""The run's files and how a run ends: OUTPUT_DIR checked (writable, apart from every input, never a
folder of the user's other files) and locked across torchrun's processes, atomic writes of files
and folders, clearing a replaced run, the logs' lines, and signals (Ctrl-C, SIGTERM)."""
import errno
import fcntl
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import tempfile


from .rewards import is_reward_function, reward_names
from .script import Refusal, first_line


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
    out_dir (the names of RUN_FILES; the user's other files stay): all move into
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
    """Rank 0 takes OUTPUT_DIR's run lock (RunLock) and every rank hears its refusal."""
    lock = error = None
    if ranks.writes:
        try:
            lock = RunLock(out_dir)
        except Refusal as e:
            error = str(e)
    error = ranks.first_object(error)
    if error:
        raise Refusal(error)
    return lock
# Every name a run writes in OUTPUT_DIR (each also as NAME.tmp while it is written and NAME.prev
# while it is replaced): what a new run clears, and all it may ever touch there. The user's other
# files are never written.
RUN_FILES = ("run.lock", "config.json", "configs", "metrics.jsonl", "samples.jsonl",
             "ppo_metrics.png",
             "training_metrics.png", "checkpoint", "policy", "critic", "tensorboard", "wandb",
             "ppo.py", "config.py", "machinery", "tasks")


# a replaced run's files wait here to be removed (a kill while removing leaves them here)
REPLACED = ".replaced"


def run_file(name):
    """Whether a name in OUTPUT_DIR is one a run writes (a file of ours, or its temporary or
    previous copy)."""
    return name == REPLACED or name.split(".tmp")[0].removesuffix(".prev") in RUN_FILES


def input_paths(cfg, critic, config_files=()):
    """(setting, path) of every local input the run reads: the models, the data, the reward
    functions' modules and the config files. A reward function's module is its file (a package: its
    folder)."""
    found = [("ACTOR_MODEL", cfg.ACTOR_MODEL), ("DATASET", cfg.DATASET),
             ("EVAL_DATASET", cfg.EVAL_DATASET)]
    found += [("CRITIC_MODEL", cfg.CRITIC_MODEL)] if critic else []
    for name in reward_names(cfg.REWARD_MODEL):
        if not is_reward_function(name):
            found.append(("REWARD_MODEL", name))
            continue
        try:
            spec = importlib.util.find_spec(name.partition(":")[0])
        except (ImportError, ValueError):  # not importable: load_reward_function says so, later
            continue
        if spec is not None and spec.origin and os.path.exists(spec.origin):
            found.append(("REWARD_MODEL",
                          os.path.dirname(spec.origin) if spec.submodule_search_locations
                          else spec.origin))
    found += [("the config file", path) for path in config_files]
    return [(setting, path) for setting, path in found if path and os.path.exists(path)]


def inside(path, folder):
    """Whether path is folder or lies below it (both already resolved with realpath)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_path(cfg, critic, config_files=()):
    """OUTPUT_DIR must be a folder, or a name that can become one, where this process can write; a
    folder of its own, or one that holds a run (its run.lock), never a folder of the user's other
    files; and apart from every input: no model, dataset, reward module or config file may be it,
    contain it or lie inside it, since a run writes and replaces files there. Creates nothing: the
    probe is a nameless temporary file in the nearest folder that exists."""
    out = cfg.OUTPUT_DIR
    if os.path.islink(out) and not os.path.exists(out):
        raise Refusal(
            f"OUTPUT_DIR={out!r} is a symbolic link to {os.readlink(out)!r}, which does not exist: "
            f"create that folder, or choose another --OUTPUT_DIR.")
    path = os.path.abspath(out)
    while True:
        try:
            os.stat(path)
            break
        # the latter: a file further up, named below
        except (FileNotFoundError, NotADirectoryError):
            path = os.path.dirname(path)
        # a name too long, a NUL byte, a file where a folder should be, ...
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise Refusal(f"OUTPUT_DIR={out!r} cannot be a folder: {reason}. Choose another "
                              f"--OUTPUT_DIR.") from None
    if not os.path.isdir(path):
        what = "is a file" if path == os.path.abspath(
            out) else f"lies under {path!r}, which is a file"
        raise Refusal(f"OUTPUT_DIR={out!r} {what}, not a folder: choose another --OUTPUT_DIR.")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        reason = "a read-only file system" if e.errno == errno.EROFS else e.strerror
        raise Refusal(
            f"OUTPUT_DIR={out!r} cannot be written ({path!r}: {reason}): choose another "
            "--OUTPUT_DIR or fix its permissions.") from None
    real = os.path.realpath(out)
    if real == os.path.dirname(os.path.dirname(os.path.realpath(__file__))):  # ppo.py's folder
        raise Refusal(
            f"OUTPUT_DIR={out!r} is the code's folder: the run's files would land among its files. "
            f"Choose another --OUTPUT_DIR.")
    for setting, other in input_paths(cfg, critic, config_files):
        given = other if setting == "the config file" else f"{setting}={other!r}"
        other = os.path.realpath(other)
        if other == real:
            raise Refusal(
                f"OUTPUT_DIR={out!r} is {setting if ' ' in setting else setting + ' itself'}: the "
                "run's files would land among its files. Choose another --OUTPUT_DIR.")
        if inside(other, real):
            raise Refusal(
                f"{given} lies inside OUTPUT_DIR={out!r}, where the run writes and replaces files: "
                f"move it out of that folder, or choose another --OUTPUT_DIR.")
        if os.path.isdir(other) and inside(real, other):
            raise Refusal(
                f"OUTPUT_DIR={out!r} lies inside {given}: the run's files would mix with its "
                "files. Choose an --OUTPUT_DIR outside it.")
    if os.path.isdir(out):
        names = sorted(os.listdir(out))
        if names and RunLock.NAME not in names:  # no run of ours was ever started here
            shown = ", ".join(
                repr(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3
                                               else "")
            raise Refusal(
                f"OUTPUT_DIR={out!r} is a folder of other files ({shown}), not a run's: a run "
                "writes config.json, policy/ and more there and would replace files of the same "
                "names. Choose a new or empty folder, e.g. "
                f"--OUTPUT_DIR={os.path.join(out, 'run')}.")


class RunLock:
    """One run per OUTPUT_DIR: an exclusive flock on OUTPUT_DIR/run.lock, held for the whole run and
    released by the kernel when the process ends, however it ends (so a killed run leaves no stale
    lock). The file holds the holder's process id and host, which a refused second run names. The
    file stays after the run."""
    NAME = "run.lock"

    def __init__(self, out_dir):
        self.out_dir, self.created = out_dir, not os.path.exists(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        self.path = os.path.join(out_dir, self.NAME)
        self.created_file = not os.path.exists(self.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(self.fd, 200).decode(errors="replace").split()
            os.close(self.fd)
            who = f"process {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise Refusal(
                f"OUTPUT_DIR={out_dir!r} is in use by a run that is still going ({who}): wait for "
                "it to end, stop it, or choose another --OUTPUT_DIR.") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()} {socket.gethostname()}\n".encode())

    def release(self, refused=False):
        """Unlocks. A run refused after the lock was taken leaves no folder, and no lock file, it
        created itself."""
        if refused and self.created_file:
            os.remove(self.path)
            if self.created and not os.listdir(self.out_dir):
                os.rmdir(self.out_dir)
        os.close(self.fd)
