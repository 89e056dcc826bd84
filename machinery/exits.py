"""How a run starts and how it ends, as exit codes: 0 done, 1 a fault (saved where it could be), 2
refused before any work, 3 stopped by a health alarm (HEALTH="stop", saved), 130/143 interrupted.

`Startup` wraps ppo.main's start-up (settings, checks, OUTPUT_DIR's lock, the trainer's
construction): a refusal is one line and 2, a fault while loading one line and 1, a signal 130/143,
and nothing is left behind. `Stops` wraps PPOTrainer.train()'s loop: every way out of it (a `Stop`
the loop raises, a reward function's fault, a fault in a step, a failed save, a second signal)
becomes one message, a checkpoint where one can be saved, and the exit code."""
import os
import shutil
import signal
import sys
import traceback

from . import health
from .distributed import Ranks, check_sharding, sharding_on
from .models import check_distributed
from .rewards import RewardError
from .run_files import (Interrupted, SaveError, StopOnSignal, check_output_path, interrupt,
                        lock_output_dir, quiet_progress_bars)
from .script import Refusal, command, debug_requested, first_line, script_path


class Stop(Exception):
    """Raised by the run loop to end the run early: `message` is said, then (go_on) the command
    that continues it; `save`: a checkpoint is written first."""

    def __init__(self, message, code, save=True, go_on=True):
        super().__init__(message)
        self.message, self.code, self.save, self.go_on = message, code, save, go_on

    @classmethod
    def health_alarm(cls, step):
        """HEALTH="stop": an alarm fired (said above), exit 3, saved."""
        return cls(f"stopped by the health alarm above after step {step} (HEALTH='stop'): start "
                   "again with what the alarm says (--OVERWRITE=True), or go on as it is;",
                   health.EXIT_CODE)

    @classmethod
    def non_finite(cls, n, reason):
        """MAX_SKIPPED_IN_A_ROW updates in a row skipped for NaN/inf: a fault, exit 1, saved."""
        return cls(f"error: {n} updates in a row were skipped for NaN/inf (last: "
                   f"{reason or 'a non-finite gradient'}). Check the reward, lower LEARNING_RATE, "
                   "or use DTYPE=bfloat16 rather than float16; then", 1)


class Stops:
    """`with Stops(stop_early, roll_back, step, debug, sharded) as stops:` around the run loop. On
    the way out, `stops.code` is 0, or the code stop_early(message, code, save, go_on) returned
    for the reason the loop ended:
      * a Stop it raised (a health alarm, the non-finite guard, a signal after a step);
      * a RewardError while scoring, before the step's update: the step is rolled back and saved,
        and the message says to fix the reward function, 1;
      * a second Ctrl-C/SIGTERM (Interrupted): stopped at once, the last checkpoint kept, 128 + its
        number;
      * a SaveError: the last checkpoint kept, 1;
      * any other fault: one line (the traceback with --DEBUG=True); roll_back() says whether the
        step could be rolled back (not once its update began), and only then is it saved (never
        sharded: saving is a collective the other ranks, which may not have failed, would never
        join), 1.
    `signals` (a StopOnSignal) is the first signal's number, or 0; `step()` the step counter."""

    def __init__(self, stop_early, roll_back, step, debug, sharded, log):
        self.stop_early, self.roll_back, self.step = stop_early, roll_back, step
        self.debug, self.sharded, self.code = debug, sharded, 0
        self.signals = StopOnSignal(log)

    def __enter__(self):
        self.signals.__enter__()
        return self

    def __exit__(self, kind, error, tb):
        try:  # the run's signal handlers stay while the stop is handled (and saved)
            return self.handle(kind, error, tb)
        finally:
            self.signals.__exit__(kind, error, tb)

    def handle(self, kind, error, tb):
        if error is None:
            return False
        if isinstance(error, Stop):
            self.code = self.stop_early(error.message, error.code, error.save, error.go_on)
        elif isinstance(error, RewardError) and self.roll_back():  # raised while scoring
            self.code = self.stop_early(f"error: {error}\nFix the reward function, then", 1)
        elif isinstance(error, Interrupted):
            self.code = self.stop_early(
                f"stopped at once by a second {signal.Signals(error.signum).name};",
                128 + error.signum, save=False)
        elif isinstance(error, SaveError):
            self.code = self.stop_early(
                f"error: {error}. {'Free some space' if error.full else 'Fix that'}, then", 1,
                save=False)
        elif isinstance(error, Exception):
            if self.debug:
                traceback.print_exception(kind, error, tb)
            step = self.step()
            rolled_back = self.roll_back()
            self.code = self.stop_early(
                f"error: step {step} failed: {type(error).__name__}: {first_line(error)}.", 1,
                save=rolled_back and not self.sharded)
        else:
            return False
        return True

    def after_step(self, ranks, step):
        """Raises Stop when a signal came to any rank during the step that just ended."""
        signum = ranks.max_(self.signals.signum)
        if signum:
            raise Stop(f"stopped by {signal.Signals(signum).name} after step {step};", 128 + signum)

    def at_the_end(self, out_dir):
        """A signal that came during the last step or the final save, which it let finish."""
        if self.signals.signum:
            name = signal.Signals(self.signals.signum).name
            raise Stop(f"stopped by {name} at the end of the run, once its final checkpoint and "
                       f"folders were written: the run is complete in {out_dir}/",
                       128 + self.signals.signum, save=False, go_on=False)


def commands_to_paste(argv, ranks):
    """(the command that resumes this run, the one that starts it again): this run's own arguments
    with --RESUME=True or --OVERWRITE=True, shell-quoted, naming ppo.py as the user did (else by its
    absolute path), so either works pasted where the user ran it. Under torchrun on one machine the
    launcher is `torchrun --standalone --nproc_per_node=N`; across machines the user's own."""
    kept = [a for a in argv if not a.startswith(("--RESUME=", "--OVERWRITE="))]
    script = script_path("ppo.py")
    if not ranks.active:
        launcher = [os.path.basename(sys.executable) if shutil.which(
            os.path.basename(sys.executable)) == sys.executable else sys.executable]
    elif ranks.world == ranks.local_world:
        launcher = ["torchrun", "--standalone", f"--nproc_per_node={ranks.world}"]
    else:
        return (f"torchrun <your launcher's options> {command([script, *kept, '--RESUME=True'])}",
                f"torchrun <your launcher's options> "
                f"{command([script, *kept, '--OVERWRITE=True'])}")
    return (command([*launcher, script, *kept, "--RESUME=True"]),
            command([*launcher, script, *kept, "--OVERWRITE=True"]))


class Startup:
    """`with Startup(argv) as start:` around everything before the first step. `start.ranks` joins
    torchrun's process group first, so that a refusal is said by rank 0 before any rank leaves
    (torchrun stops the others as soon as one exits); `start.lock(cfg, critic, config_files)`
    checks the settings that need the process group and the output path, then takes OUTPUT_DIR's
    lock, held to the end of the run (one run per folder). On the way out, `start.code` is None
    (go on) or the exit code, said in one line: 2 for a Refusal, 1 for a fault while loading, 128 +
    the signal's number; the lock is released and a folder this run made and wrote nothing else
    into is removed."""

    def __init__(self, argv):
        self.ranks = Ranks()
        self.log = print if self.ranks.writes else (lambda *args, **kwargs: None)
        self.debug, self.code, self.held = debug_requested(argv), None, None

    def __enter__(self):
        self.handlers = {sig: signal.signal(sig, interrupt)
                         for sig in (signal.SIGINT, signal.SIGTERM)}
        self.ranks.start()
        return self

    def lock(self, cfg, algorithm, config_files):
        check_distributed(cfg, self.ranks.world)
        check_sharding(cfg, self.ranks)
        self.ranks.start(always=sharding_on(cfg.SHARDING, self.ranks.world))  # FSDP2: a group
        check_output_path(cfg, algorithm.critic, config_files)
        self.held = lock_output_dir(cfg.OUTPUT_DIR, self.ranks)
        quiet_progress_bars()  # imports transformers and datasets: after the settings' refusals

    def __exit__(self, kind, error, tb):
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)
        if error is None or not isinstance(error, (Exception, Interrupted)):
            return False
        if self.held is not None:
            self.held.release(refused=True)  # and the folder, if this run made it
        if self.debug:
            return False
        if isinstance(error, Interrupted):
            self.code = 128 + error.signum
            message = f"{signal.Signals(error.signum).name} while starting; nothing was written"
        elif isinstance(error, Refusal):
            self.code, message = 2, str(error)
        else:  # out of memory, a weights file that passed the checks but not the loader
            self.code, message = 1, f"could not start: {type(error).__name__}: {first_line(error)}"
        if self.ranks.writes:
            print(f"error: {message}", file=sys.stderr)
        if self.code == 2:
            self.ranks.stop()  # a barrier: the others wait until rank 0 has said it
        return True

    def finish(self):
        if self.held is not None:
            self.held.release()
        self.ranks.stop()


def what_next(saved, saved_step, commands):
    """The end of an early stop's message: the command that continues the run (`commands`:
    (resume, restart)) and which checkpoint it resumes, or, where no checkpoint was ever written,
    the one that starts it again."""
    if saved or saved_step is not None:
        kept = "The run is saved" if saved else \
            f"The last checkpoint is kept (it resumes at step {saved_step})"
        return f" continue with:\n  {commands[0]}\n({kept}.)"
    return (f" start again with:\n  {commands[1]}\n(No checkpoint was written yet, so there is "
            "nothing to resume.)")
