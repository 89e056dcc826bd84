"""The run around the algorithm: start-up (checks before any weight loads, OUTPUT_DIR's lock, the
embedded tasks' models), the loop over steps with its logs, health checks, plots and checkpoints,
signals, and the exit codes: 0 done, 1 a fault (saved where it could be), 2 refused before any work,
3 stopped by a health alarm (HEALTH="stop", saved), 130/143 interrupted. PPOTrainer inherits
RunLoop; ppo.main calls main here."""
import json
import os
import shutil
import signal
import sys
import time
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch

from . import health
from .distributed import Ranks, check_sharding, shard_sizes, sharding_on, weights_fingerprint
from .models import check_distributed
from .preflight import (ALGORITHMS, ConfigError, RewardError, check_output_path, check_settings,
                        config_files, embedded_task, load_config, settings_help)
from .script import command, debug_requested, first_line, script_path
from .run import (Interrupted, SaveError, StopOnSignal, clear_run, format_samples, interrupt,
                  Timings, json_line, keep_rows_before, lock_output_dir, quiet_progress_bars,
                  write_file)


class RunLoop:
    """train() and its logs, for a PPOTrainer: step() repeated, with evaluations, checkpoints and
    plots on their schedules, and every way a run can end."""

    def train(self, resume_command="python ppo.py <the same settings> --RESUME=True",
              restart_command="python ppo.py <the same settings> --OVERWRITE=True"):
        """Runs to the end and returns 0; or stops early, after saving a checkpoint and the plots,
        and returns the exit code: 3 on a health alarm with HEALTH="stop", 130/143 on
        Ctrl-C/SIGTERM, 1 on a fault (the reward function fails, the guard gives up, an error in a
        step, a save that cannot be written). A fault
        before the step's update rolls the step back and saves; one during the update, or a second
        Ctrl-C/SIGTERM, keeps the last checkpoint instead. Under torchrun only rank 0 writes files,
        and every decision to stop is taken by all ranks together. The commands are what the user
        is told to paste to go on (a checkpoint exists) or to start again (none does)."""
        self.resume_command, self.restart_command = resume_command, restart_command
        try:
            return self.run()
        finally:
            if self.tracker is not None:  # flushed and closed however the run ends
                self.tracker.close()

    def run(self):
        from tqdm import tqdm
        cfg, before = self.cfg, None
        with StopOnSignal(self.log) as signals, tqdm(total=self.total_steps,
                                                     initial=self.step_count,
                                                     desc=cfg.ALGORITHM, dynamic_ncols=True,
                                                     disable=not self.ranks.writes) as bar:
            # closed before a message that ends the run, so that it starts a line of its own
            self.bar = bar
            try:
                self.start_logs()
                while self.step_count < self.total_steps:
                    before, self.updating = self.light_state(), False
                    try:
                        # of the policy step() samples
                        evaluation = self.evaluate() if self.evaluation_due() else {}
                        metrics, samples = self.step()
                    # raised while scoring, before any update: roll the step back
                    except RewardError as e:
                        self.restore_light_state(before)
                        return self.stop_early(f"error: {e}\nFix the reward function, then", 1)
                    metrics.update(evaluation)
                    last = self.step_count == self.total_steps or (
                        cfg.MAX_RESPONSES is not None
                            and self.responses_generated >= cfg.MAX_RESPONSES)
                    alarms = self.write_logs(metrics, samples, last, bar)
                    # HEALTH="stop": saved, with an exit code of its own; resumed, the run goes on
                    # (an alarm that fired does not stop it again)
                    if cfg.HEALTH == "stop" and self.ranks.any(bool(alarms)):
                        return self.stop_early(
                            f"stopped by the health alarm above after step {metrics['step']} "
                            "(HEALTH='stop'): start again with what the alarm says "
                            "(--OVERWRITE=True), or go on as it is;", health.EXIT_CODE)
                    if self.skipped_in_a_row >= cfg.MAX_SKIPPED_IN_A_ROW:
                        return self.stop_early(
                            f"error: {self.skipped_in_a_row} updates in a row were skipped for "
                            "NaN/inf (last: "
                            f"{metrics.get('skip_reason', 'a non-finite gradient')}). Check the "
                            "reward, lower LEARNING_RATE, or use DTYPE=bfloat16 rather than "
                            "float16; then", 1)
                    if last:
                        break
                    # a signal to any rank stops all after this step
                    signum = self.ranks.max_(signals.signum)
                    if signum:
                        return self.stop_early(
                            f"stopped by {signal.Signals(signum).name} after step "
                            f"{metrics['step']};", 128 + signum)
                    if self.step_count % cfg.SAVE_EVERY == 0:
                        self.save_checkpoint()
                    if self.step_count % cfg.PLOT_EVERY == 0:
                        self.plot()
                self.check_ranks_agree()
                # lets a later --RESUME=True with a larger MAX_STEPS continue the run
                self.save_checkpoint()
                # the final policy: a row of its own, at the step it would start
                if self.eval_prompts is not None:
                    before = None  # a fault here leaves the saved checkpoint as it is
                    row = {"step": self.step_count, **self.evaluate()}
                    self.check_health(row, bar)
                    self.log_row(row)
                self.plot()
                self.save()
                # it came during the last step or the final save, which it let finish
                if signals.signum:
                    name = signal.Signals(signals.signum).name
                    return self.stop_early(
                        f"stopped by {name} at the end of the run, once its final checkpoint and "
                        f"folders were written: the run is complete in {cfg.OUTPUT_DIR}/",
                        128 + signals.signum, save=False, go_on=False)
            except Interrupted as e:
                return self.stop_early(
                    f"stopped at once by a second {signal.Signals(e.signum).name};",
                    128 + e.signum, save=False)
            except SaveError as e:
                return self.stop_early(
                    f"error: {e}. {'Free some space' if e.full else 'Fix that'}, then", 1,
                    save=False)
            # any other fault: one line (the traceback with --DEBUG=True), saved if it can be
            except Exception as e:
                if cfg.DEBUG:
                    traceback.print_exc()
                # the weights are still the step's start's
                rollback = before is not None and not self.updating
                if rollback:
                    self.restore_light_state(before)
                # Sharded, saving is a collective that the other ranks, which may not have failed,
                # would never join.
                return self.stop_early(f"error: step {self.step_count} failed: {type(e).__name__}: "
                                       f"{first_line(e)}.", 1, save=rollback and not self.sharded)
        self.health_summary()
        self.log(
            f"done in {time.time() - self.t0:.0f}s; outputs in {cfg.OUTPUT_DIR}/ (ppo_metrics.png, "
            "training_metrics.png, metrics.jsonl, samples.jsonl, "
            f"policy/{', critic/' if self.critic is not None else ''})")
        return 0

    def start_logs(self):
        """Rank 0 writes config.json (and copies the config files into OUTPUT_DIR/configs/), opens
        the tracker, and trims metrics.jsonl and samples.jsonl to the steps the checkpoint covers (a
        new run: none; OVERWRITE also removes the replaced run's checkpoints). The clock `elapsed`
        goes on across a resume."""
        out, kept = self.cfg.OUTPUT_DIR, []
        if self.ranks.writes:
            # a new run: what an earlier one left (OVERWRITE) goes first, all of it
            if not self.cfg.RESUME:
                clear_run(out)
            write_file(os.path.join(out, "config.json"), json.dumps(vars(self.cfg), indent=2))
            names = [os.path.basename(path) for path in self.config_files]
            # the files the settings came from
            for i, (path, name) in enumerate(zip(self.config_files, names), 1):
                with open(path) as f:
                    os.makedirs(os.path.join(out, "configs"), exist_ok=True)
                    # a/base.py b/base.py: 1_base.py ...
                    name = f"{i}_{name}" if names.count(name) > 1 else name
                    write_file(os.path.join(out, "configs", name), f.read())
            kept = keep_rows_before(os.path.join(out, "metrics.jsonl"), self.step_count)
            keep_rows_before(os.path.join(out, "samples.jsonl"), self.step_count)
        # the health checks read the rows a resumed run kept, and know which alarms fired
        kept = self.ranks.first_object(kept if self.ranks.writes else None) or []
        self.health_rows = list(kept)
        for row in kept:
            for name in row.get("health", []):
                self.health_fired[name] = self.health_fired.get(name, 0) + 1
        if self.ranks.writes and self.cfg.REPORT_TO != "none":
            import plotting
            name = self.cfg.RUN_NAME or os.path.basename(os.path.normpath(os.path.abspath(out)))
            self.tracker = plotting.Tracker(self.cfg.REPORT_TO, out, name, vars(self.cfg),
                                            self.step_count)
        self.t0 = time.time() - (kept[-1].get("elapsed", 0.0) if kept else 0.0)

    def write_logs(self, metrics, samples, last, bar):
        """One step's row in metrics.jsonl, after its health checks; its samples in samples.jsonl
        and on the console every SAMPLE_EVERY steps and at the last; the progress bar. Rank 0
        writes. Returns the alarms that fired for the first time at this step."""
        cfg, out, step = self.cfg, self.cfg.OUTPUT_DIR, metrics["step"]
        alarms = self.check_health(metrics, bar)
        bar.update()
        bar.set_postfix({**{k: f"{metrics[k]:.3f}"
                            for k in ("reward", "kl", "value_loss", "response_length",
                                      "eval_reward") if k in metrics},
                         **({"health": "+".join(health.SHORT[n] for n in self.health_fired)}
                            if self.health_fired else {})})
        self.log_row(metrics)
        if self.ranks.writes and samples and (step % cfg.SAMPLE_EVERY == 0 or last):
            with open(os.path.join(out, "samples.jsonl"), "a") as f:
                f.writelines(json_line(s) for s in samples[:cfg.NUM_SAMPLES])
            bar.write(format_samples(samples[:cfg.NUM_SAMPLES], step))
            if self.tracker is not None:
                self.tracker.log_samples(samples[:cfg.NUM_SAMPLES], step)
        return alarms

    def check_health(self, row, bar):
        """The health checks on the logged rows with this one last (machinery/health.py): the
        names of the alarms firing go into the row ("health"); the first firing of each check is
        one line on the console and text in the tracker, later ones are counted. Returns the
        first firings. HEALTH="off": none."""
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
                bar.write(alarm.line(row["step"]))
            if self.tracker is not None:
                self.tracker.log_text("health", alarm.line(row["step"]), row["step"])
        return new

    def health_summary(self):
        """At the end of a run: how often each alarm fired (its first firing was said then)."""
        if self.health_fired:
            counts = [f"{name} on {n} step{'s' if n > 1 else ''}"
                      for name, n in self.health_fired.items()]
            self.log(f"health: {'; '.join(counts)} (metrics.jsonl's health field; shaded in the "
                     "PNGs)")

    def log_row(self, metrics):
        """A row of metrics.jsonl, also sent to the tracker (REPORT_TO); rank 0 writes."""
        metrics["elapsed"] = time.time() - self.t0
        if not self.ranks.writes:
            return
        with open(os.path.join(self.cfg.OUTPUT_DIR, "metrics.jsonl"), "a") as f:
            f.write(json_line(metrics))
        if self.tracker is not None:
            self.tracker.log(metrics, metrics["step"])

    def stop_early(self, message, code, save=True, go_on=True):
        """Saves the checkpoint (or, with save=False, keeps the last one), redraws the plots, says
        why it stopped and (go_on) the command that continues the run, or, where no checkpoint was
        ever written, the one that starts it again; returns the exit code."""
        if save:
            try:
                self.save_checkpoint()
            except SaveError as e:
                save, message = False, f"{message}\nerror: {e}"
        if go_on and (save or self.saved_step is not None):
            kept = "The run is saved" if save else \
                f"The last checkpoint is kept (it resumes at step {self.saved_step})"
            message += f" continue with:\n  {self.resume_command}\n({kept}.)"
        elif go_on:
            message += (" start again with:\n  {}\n(No checkpoint was written yet, so there is "
                        "nothing to resume.)").format(self.restart_command)
        self.plot()
        if self.bar is not None:
            self.bar.close()  # ends the bar's line: the message starts one of its own
        self.log(message)
        return code

    def plot(self):
        """Redraws the PNGs from metrics.jsonl (~2 s on 2 CPU cores, hence PLOT_EVERY); rank 0
        only. A chart that cannot be drawn is a warning, never a fault: metrics.jsonl holds every
        figure, and `python plotting.py OUTPUT_DIR` draws them later."""
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

    def check_ranks_agree(self):
        """Under torchrun: every rank must end with the same weights (they took the same summed
        steps); a difference would mean the ranks trained different models, so it stops the run
        rather than save one. (Sharded, the ranks hold one copy between them: nothing to
        compare.)"""
        if not self.ranks.active or self.sharded:
            return
        models = [self.policy] + ([self.critic] if self.critic is not None else [])
        prints = self.ranks.all_objects([weights_fingerprint(m).tolist() for m in models])
        if any(p != prints[0] for p in prints):
            raise RuntimeError(
                f"the processes ended with different weights (fingerprints {prints}): a bug, "
                "please report it with your settings")
        self.log(f"weights identical on all {self.ranks.world} processes")

    # ---- the run's state -----------------------------------------------------------------------
    def planned_steps(self):
        """MAX_STEPS, or NUM_EPOCHS passes over the prompts; the response budget (MAX_RESPONSES),
        when set, also ends the run and so sets the learning-rate schedule's length."""
        cfg = self.cfg
        steps = cfg.MAX_STEPS or cfg.NUM_EPOCHS * len(self.prompts) // cfg.BATCH_SIZE
        if cfg.MAX_RESPONSES is not None:
            steps = min(steps, -(-cfg.MAX_RESPONSES // (cfg.BATCH_SIZE * cfg.GROUP_SIZE)))
        return steps

    def start_counters(self):
        """What a run counts and holds besides the models (a checkpoint saves the counters)."""
        self.step_count = 0  # PPO steps done
        self.data_position = 0  # prompts consumed from the stream (stream_indices)
        self.responses_generated = 0  # dropped ones included
        self.skipped_updates, self.skipped_in_a_row = 0, 0  # the non-finite guard's counts
        self.timings = Timings(self.devices)  # this step's clocks, reset by step()
        self.reward_truncated = 0  # this step's rows cut to fit the reward model, reset by step()
        self.updating = False  # inside update(): a fault there leaves no step-start state to save
        self.saved_step = None  # step_count of the last checkpoint written or loaded
        self.tracker = None  # REPORT_TO's, opened by start_logs on rank 0
        self.bar = None  # the progress bar, while run() goes
        self.plot_warning = None  # the last chart failure said (plot)
        self.health_rows = []  # the rows the health checks read (start_logs: a resumed run's)
        self.health_fired = {}  # {check: steps it fired on}, in the order they first fired
        # The critic trains in a thread of its own beside the policy (update()).
        self.critic_thread = ThreadPoolExecutor(1, thread_name_prefix="critic") \
            if self.critic is not None else None

    # ---- a step's records and its guard, for step() ----
    def samples(self, batch):
        """This rank's rows, for samples.jsonl."""
        return [{"step": self.step_count - 1, "prompt": p, "response": r, "reward": s}
                for p, r, s in zip(batch["prompts"], batch["responses"], batch["scores"].tolist())]

    def non_finite_reward(self, batch):
        """Why this step must not update (a NaN/inf reward on any rank, named with its prompt and
        response), or None. Every rank gets the same answer."""
        scores = batch["scores"]
        bad = None if torch.isfinite(scores).all() else int((~torch.isfinite(scores)).nonzero()[0])
        if not self.ranks.any(bad is not None):
            return None
        reason = bad is not None and (
            f"reward {scores[bad].item()} for prompt {batch['prompts'][bad]!r}, "
            f"response {batch['responses'][bad]!r}")
        return self.ranks.first_object(reason or None)

    def counters(self, batch, lengths, lr):
        """The step's counters, learning rate and clocks (the time_* metrics)."""
        G, seconds, elapsed = self.cfg.GROUP_SIZE, self.timings.seconds, self.timings.elapsed()
        truncated = sum(self.prompts_truncated[i] for i in batch["prompt_index"]) // G
        return {"reward_truncated": self.ranks.sum_(torch.tensor(self.reward_truncated)),
                "prompts_truncated": self.ranks.sum_(torch.tensor(truncated)),
                "lr": lr, "epoch": self.data_position / len(self.prompts),
                "responses_generated": self.responses_generated,
                "skipped_updates": self.skipped_updates,
                "tokens_per_sec": lengths.sum() / elapsed,
                **{f"time_{k}": seconds.get(k, 0.0)
                   for k in ("generate", "reward", "forward", "update")},
                "step_time": elapsed}

    def score_parts(self, batch):
        """Each scorer's rewards (B,), by name, when REWARD_MODEL has several."""
        names = self.scorer.names
        return {} if len(names) < 2 else {name: self.ranks.all_rows(
            self.cfg.MAX_NEW_TOKENS, batch["score_parts"][:, j])[0] for j, name in enumerate(names)}

    def sampling_counts(self, generated, dropped, rounds):
        """DYNAMIC_SAMPLING's share of groups dropped and its rounds."""
        return dict(groups_dropped=dropped / generated, sampling_rounds=rounds) if \
            self.cfg.DYNAMIC_SAMPLING else {}

    def evaluation_due(self):
        """At step 0, every EVAL_EVERY steps, and (train() calls it) at the end."""
        every = self.cfg.EVAL_EVERY
        return self.eval_prompts is not None and (self.step_count == 0
                                                  or bool(every and self.step_count % every == 0))

    def count_skipped(self, what, n=1):
        """The non-finite guard's bookkeeping for n updates it did not apply."""
        self.skipped_updates += n
        self.skipped_in_a_row += n
        self.log(f"warning: step {self.step_count}: {what}")

    def skip_step(self, reason):
        """A step whose update was skipped by the guard: counted, logged, the learning-rate schedule
        still moves."""
        self.count_skipped(f"update skipped ({reason})")
        # stepping a schedule before any optimizer step is intended here
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore",
                                    message="Detected call of `lr_scheduler.step\\(\\)` before")
            for sched in self.schedulers:
                sched.step()
        self.step_count += 1
        return {"step": self.step_count - 1, "skipped_updates": self.skipped_updates,
                "skip_reason": reason,
                "responses_generated": self.responses_generated}


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


def main(argv, trainer_class):
    """python ppo.py [--NAME=value ...], or under torchrun (data parallel: see Ranks). Returns the
    exit code: 0 done, 1 a fault (saved where it could be), 2 refused before any work, 130/143
    interrupted."""
    if "--help" in argv or "-h" in argv:
        import config
        print(settings_help(config))
        return 0
    quiet_progress_bars()
    ranks = Ranks()
    log = print if ranks.writes else (lambda *args, **kwargs: None)
    debug, lock = debug_requested(argv), None
    # start-up only
    handlers = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Join the process group first, so that a refusal below is said by rank 0 before any rank
        # leaves: torchrun stops the other ranks as soon as one exits, and rank 0 could be stopped
        # before it had printed.
        ranks.start()
        cfg = load_config(argv, log)
        check_settings(cfg)
        check_distributed(cfg, ranks.world)
        check_sharding(cfg, ranks)
        # FSDP2 shards over a group, even of one
        ranks.start(always=sharding_on(cfg.SHARDING, ranks.world))
        check_output_path(cfg, config_files(argv))
        lock = lock_output_dir(cfg.OUTPUT_DIR, ranks)  # held to the end: one run per folder
        # the embedded tasks' policies, built once and cached, when this run loads one (a critic
        # only where the algorithm trains one)
        loaded = [cfg.ACTOR_MODEL] + [cfg.CRITIC_MODEL] * ALGORITHMS[cfg.ALGORITHM].critic
        for task in {embedded_task(path) for path in loaded} - {None}:
            if ranks.writes:
                task.build()
        ranks.barrier()
        trainer = trainer_class(cfg, log=log, ranks=ranks, settings_checked=True,
                                config_files=config_files(argv))
    except (Exception, Interrupted) as e:
        if lock is not None:
            lock.release(refused=True)  # and the folder, if this run made it and wrote nothing else
        if debug:
            raise
        if isinstance(e, Interrupted):
            code = 128 + e.signum
            message = f"{signal.Signals(e.signum).name} while starting; nothing was written"
        elif isinstance(e, ConfigError):
            code, message = 2, str(e)
        # a fault while loading: out of memory, a weights file that passed the checks but not the
        # loader
        else:
            code, message = 1, f"could not start: {type(e).__name__}: {first_line(e)}"
        if ranks.writes:
            print(f"error: {message}", file=sys.stderr)
        if code == 2:
            ranks.stop()  # a barrier: the others wait until rank 0 has said it
        return code
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    ranks.barrier()  # every rank has checked OUTPUT_DIR before rank 0 writes into it
    log(f"devices: {', '.join(f'{k}={v}' for k, v in trainer.devices.items())}; dtype "
        f"{trainer.dtype}; {len(trainer.prompts)} prompts, {trainer.total_steps} steps"
        + (f"; {ranks.world} processes, {cfg.BATCH_SIZE // ranks.world} prompts each"
           if ranks.active else "")
        + (f"; every model sharded over the {ranks.world} process(es) (FSDP2)" if trainer.sharded
           else ""))
    if trainer.sharded:
        held = [f"{name} {local:,} of {total:,}" for name, model in trainer.models().items()
                for local, total in [shard_sizes(model)]]
        log(f"parameters held by each process: {', '.join(held)}")
    resume_command, restart_command = commands_to_paste(argv, ranks)
    code = trainer.train(resume_command, restart_command)
    if lock is not None:
        lock.release()
    ranks.stop()
    return code
