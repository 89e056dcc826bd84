"""Health checks: each a small pure function of the run's logged rows (metrics.jsonl's, oldest
first, the step just logged last) that returns an Alarm, or None while the run looks healthy.
logs.RunLog.check_health runs them all after every step (and on the final evaluation's row), prints
the first firing of each check as one line that says what to change, counts the rest, and with
HEALTH="stop" ends the run, saved, with exit code 3 (EXIT_CODE).

The thresholds are chosen far outside what this project's healthy runs log (docs/health.md gives,
per check, the healthy runs' extremes it was set against and the failures it catches), so that an
alarm means a run is going wrong, not that it is noisy."""
import math
import statistics
from dataclasses import dataclass

EXIT_CODE = 3  # HEALTH="stop": an alarm ended the run (0 done, 1 fault, 2 refused, 130/143 signals)

# update too large. approx_kl is k3 KL(old || new) per token, averaged over the update's minibatch
# steps. PPO aims at ~0.01 (Schulman et al. 2017, sec. 4: d_targ 0.003-0.03; Spinning Up's
# target_kl 0.01-0.05); SmolLM2 at the defaults logs 0.012-0.028, but the near-uniform tiny policies
# of bench/family.py reach 0.81 in runs that learn (docs/health.md). Wrecked runs: 2.8 (SmolLM2 at
# 3e-4 on 8 additions: 4 optimizer steps, the first of them at ratio 1), 6.1 (the embedded model at
# 100x its rate), 14.7 (SmolLM2 at 3e-4 on the sentiment task's 32 prompts). 1.5 is the geometric
# middle of 0.81 and 2.8.
APPROX_KL_MAX = 1.5
# A single pass has ratio 1 and approx_kl 0 by construction, so the step is seen in the KL to the
# reference instead: its rise from one step to the next, per response token. SmolLM2 at 3e-4 rose
# 0.9 nats per token in one GRPO step (10.9 nats over 12 tokens), addition's GRPO at 3e-3 2.6;
# healthy runs rise by at most 0.29 (the embedded default).
KL_JUMP_PER_TOKEN_MAX = 0.5
# KL runaway: the adaptive controller losing (KL_TARGET set: kl above twice the target for
# RUNAWAY_STEPS steps; the controller moves the coefficient by at most 20% per horizon, Ziegler et
# al. 2019, sec. 2.2), or, with a fixed coefficient, a KL per token above this for as long while
# still growing: every response token e^2 times likelier under the policy than the reference.
KL_PER_TOKEN_MAX = 2.0
KL_TARGET_FACTOR = 2.0
RUNAWAY_STEPS = 5
# entropy collapse: the mean entropy per token below this share of step 0's and below an absolute
# floor (near-greedy sampling): clip-higher's motivation in DAPO (Yu et al. 2025, sec. 3.1).
ENTROPY_SHARE_MIN = 0.1
ENTROPY_FLOOR = 0.05
# length collapse: responses shrunk below LENGTH_SHARE_MIN of their length at step 0 (when that was
# LENGTH_START_MIN tokens or more: a 3-token answer has no room), or none ending with EOS on
# PINNED_STEPS steps in a row where at step 0 at least EOS_START_MIN of them ended. DAPO's overlong
# shaping on bench/family.py's aside task took 24 tokens to 3.6 (0.15); healthy runs keep 0.54 or
# more. The family's near-uniform policies end 0-4 of 16 responses a step by chance: one step
# without EOS after 4 of 16 at step 0 is noise.
LENGTH_SHARE_MIN = 0.25
LENGTH_START_MIN = 4.0
EOS_START_MIN = 0.5
PINNED_STEPS = 5
# critic not learning: explained variance averaged over the last EV_STEPS steps below EV_MAX, after
# EV_WARMUP: the critic worse than a constant. A critic that learns may hover at 0 while the rewards
# are sparse (configs/arithmetic_ppo.py: within -0.09 ... 0.06 over its first 40 steps, and it
# learns), bench/family.py's narrow task down to -0.20 over 10 steps (its PPO gains a quarter of
# TRL's there, but gains); SmolLM2's critic under a N(0, 0.02) head read -11 at step 0 and -2.6 at
# step 11.
EV_WARMUP = 10
EV_STEPS = 10
EV_MAX = -0.5
# no learning signal: GRPO-style advantages all 0 (every group uniform), or a constant reward, on
# NO_SIGNAL_STEPS steps in a row (a hard task's few right answers leave some steps without any).
NO_SIGNAL_STEPS = 5
# reward hacking: the held-out reward below its best by more than HACKING_Z standard errors of the
# difference, while the training reward is above what it was at that best evaluation.
HACKING_Z = 3.0
# exploding gradients: grad_norm above this multiple of its median over the earlier steps (at least
# GRAD_HISTORY of them).
GRAD_NORM_FACTOR = 10.0
GRAD_HISTORY = 5


@dataclass(frozen=True)
class Alarm:
    check: str  # the check's name, e.g. "update too large"
    metric: str  # what it read, e.g. "approx_kl"
    value: float
    threshold: str  # e.g. "> 1.0"
    advice: str  # the likely cause and the setting to change

    def line(self, step):
        return (f"health: {self.check} at step {step}: {self.metric} {self.value:.3g} "
                f"{self.threshold} - {self.advice}")


def training_rows(rows):
    """The rows of steps that trained (a skipped step's row has no reward; the final evaluation's
    row is eval_* alone)."""
    return [r for r in rows if finite(r.get("reward"))]


def finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def lr_advice(row, what):
    lr = row.get("lr")
    if not finite(lr) or lr <= 0:
        return f"{what}; lower LEARNING_RATE"
    return (f"{what}: the learning rate {lr:.3g} is high for this model; try "
            f"--LEARNING_RATE={lr / 100:.1g} ... {lr / 10:.1g}")


def update_too_large(rows, cfg):
    """approx_kl far above PPO's range, or (any algorithm with a reference, single passes included)
    the KL to the reference rising by more than KL_JUMP_PER_TOKEN_MAX per token in one step."""
    steps = training_rows(rows)
    if not steps or steps[-1] is not rows[-1]:
        return None
    now = steps[-1]
    if finite(now.get("approx_kl")) and now["approx_kl"] > APPROX_KL_MAX:
        return Alarm("update too large", "approx_kl", now["approx_kl"], f"> {APPROX_KL_MAX}",
                     lr_advice(now, "one update moved the policy far"))
    if len(steps) >= 2 and all(finite(r.get("kl")) for r in steps[-2:]) and \
            finite(now.get("response_length")) and now["response_length"] > 0:
        jump = (now["kl"] - steps[-2]["kl"]) / now["response_length"]
        if jump > KL_JUMP_PER_TOKEN_MAX:
            return Alarm("update too large", "kl rise per token", jump,
                         f"> {KL_JUMP_PER_TOKEN_MAX} in one step (kl {steps[-2]['kl']:.3g} -> "
                         f"{now['kl']:.3g})", lr_advice(now, "the last update moved the policy "
                                                              "far from the reference"))
    return None


def kl_runaway(rows, cfg):
    """KL to the reference above twice KL_TARGET for RUNAWAY_STEPS steps (adaptive controller), or
    (fixed KL_COEF) above KL_PER_TOKEN_MAX per token on each of them and growing throughout."""
    steps = training_rows(rows)[-RUNAWAY_STEPS:]
    if len(steps) < RUNAWAY_STEPS or steps[-1] is not rows[-1] or \
            not all(finite(r.get("kl")) for r in steps):
        return None
    kl = [r["kl"] for r in steps]
    if cfg.KL_TARGET is not None:
        if min(kl) > KL_TARGET_FACTOR * cfg.KL_TARGET:
            return Alarm("KL runaway", "kl", kl[-1],
                         f"> {KL_TARGET_FACTOR:g} x KL_TARGET ({cfg.KL_TARGET:g}) for "
                         f"{RUNAWAY_STEPS} steps",
                         "the adaptive controller cannot hold the target: lower LEARNING_RATE or "
                         "KL_HORIZON (it adapts faster)")
        return None
    per_token = [r["kl"] / r["response_length"] for r in steps
                 if finite(r.get("response_length")) and r["response_length"] > 0]
    if len(per_token) == RUNAWAY_STEPS and min(per_token) > KL_PER_TOKEN_MAX and \
            all(b > a for a, b in zip(kl, kl[1:])):
        return Alarm("KL runaway", "kl per token", per_token[-1],
                     f"> {KL_PER_TOKEN_MAX} and growing for {RUNAWAY_STEPS} steps",
                     f"the policy is leaving the reference: raise KL_COEF (now "
                     f"{steps[-1].get('kl_coef', 'its default')}) or set KL_TARGET, or lower "
                     f"LEARNING_RATE")
    return None


def entropy_collapse(rows, cfg):
    """The entropy per token below ENTROPY_SHARE_MIN of step 0's and below ENTROPY_FLOOR."""
    steps = training_rows(rows)
    if len(steps) < 2 or steps[-1] is not rows[-1] or \
            not (finite(steps[0].get("entropy")) and finite(steps[-1].get("entropy"))):
        return None
    first, now = steps[0]["entropy"], steps[-1]["entropy"]
    if now < ENTROPY_FLOOR and now < ENTROPY_SHARE_MIN * first:
        return Alarm("entropy collapse", "entropy", now,
                     f"< {ENTROPY_FLOOR} (step 0: {first:.3g})",
                     "sampling has become nearly greedy and stops exploring: CLIP_RANGE_HIGH=0.28 "
                     "(clip-higher), ENTROPY_COEF=0.001, or a lower LEARNING_RATE")
    return None


def length_collapse(rows, cfg):
    """Responses shrunk below LENGTH_SHARE_MIN of step 0's length (LENGTH_START_MIN tokens or more);
    or none ending with EOS on PINNED_STEPS steps in a row where at step 0 EOS_START_MIN of them
    ended."""
    steps = training_rows(rows)
    if len(steps) < 2 or steps[-1] is not rows[-1]:
        return None
    first, now = steps[0], steps[-1]
    if finite(now.get("response_length")) and finite(first.get("response_length")) and \
            first["response_length"] >= LENGTH_START_MIN and \
            now["response_length"] < LENGTH_SHARE_MIN * first["response_length"]:
        return Alarm("length collapse", "response_length", now["response_length"],
                     f"< {LENGTH_SHARE_MIN:g} x step 0's ({first['response_length']:.3g} tokens)",
                     "the reward pays for stopping early: a length penalty (OVERLONG_BUFFER, "
                     "MISSING_EOS_PENALTY) may outweigh the score, or the reward favours short "
                     "replies")
    recent = steps[-PINNED_STEPS:]
    if len(recent) == PINNED_STEPS and finite(first.get("eos_fraction")) and \
            first["eos_fraction"] >= EOS_START_MIN and \
            all(r.get("eos_fraction") == 0 for r in recent):
        return Alarm("length collapse", "eos_fraction", 0.0,
                     f"= 0 for {PINNED_STEPS} steps, every response cut at MAX_NEW_TOKENS "
                     f"({cfg.MAX_NEW_TOKENS}); step 0: {first['eos_fraction']:.2f}",
                     "the policy stopped ending its replies: set MISSING_EOS_PENALTY (e.g. 1.0) "
                     "or raise MAX_NEW_TOKENS")
    return None


def critic_not_learning(rows, cfg):
    """(a critic) explained variance averaged over the last EV_STEPS steps below EV_MAX, after
    EV_WARMUP steps."""
    steps = training_rows(rows)
    if len(steps) < EV_WARMUP + EV_STEPS or steps[-1] is not rows[-1]:
        return None
    ev = [r.get("explained_variance") for r in steps[-EV_STEPS:]]
    if all(finite(v) for v in ev) and sum(ev) / EV_STEPS < EV_MAX:
        return Alarm("critic not learning", "explained_variance", sum(ev) / EV_STEPS,
                     f"< {EV_MAX} on average over {EV_STEPS} steps (after {EV_WARMUP})",
                     "the critic's values explain none of the returns: try CRITIC_LEARNING_RATE "
                     "3-10x LEARNING_RATE, or VALUE_CLIP_RANGE=None; GRPO needs no critic")
    return None


def no_signal(rows, cfg):
    """Every group's rewards equal (GROUP_SIZE > 1: all advantages 0) or the reward constant over
    the batch, on each of the last NO_SIGNAL_STEPS steps."""
    steps = training_rows(rows)[-NO_SIGNAL_STEPS:]
    if len(steps) < NO_SIGNAL_STEPS or steps[-1] is not rows[-1]:
        return None
    key = "reward_std_in_group" if "reward_std_in_group" in steps[-1] else "reward_std"
    if all(finite(r.get(key)) and r[key] == 0 for r in steps):
        within = key == "reward_std_in_group"
        return Alarm("no learning signal", key, 0.0, f"= 0 for {NO_SIGNAL_STEPS} steps",
                     "every group's responses score alike, so every advantage is 0: a larger "
                     "GROUP_SIZE or DYNAMIC_SAMPLING=True, or an easier task" if within else
                     "the reward is the same for every response: check REWARD_MODEL and the "
                     "columns it reads")
    return None


def reward_hacking(rows, cfg):
    """At an evaluation: the held-out reward more than HACKING_Z s.e. below its best earlier one
    while the training reward (the last step's) is above the one logged with that best."""
    evals = [r for r in rows if finite(r.get("eval_reward")) and finite(r.get("eval_reward_se"))]
    if len(evals) < 2 or evals[-1] is not rows[-1]:
        return None
    now, best = evals[-1], max(evals[:-1], key=lambda r: r["eval_reward"])
    drop = best["eval_reward"] - now["eval_reward"]
    se = math.hypot(best["eval_reward_se"], now["eval_reward_se"])
    trained = training_rows(rows)
    if not trained or not finite(best.get("reward")) or se <= 0:
        return None
    if drop > HACKING_Z * se and trained[-1]["reward"] > best["reward"]:
        return Alarm("reward hacking", "eval_reward", now["eval_reward"],
                     f"{drop / se:.1f} s.e. below its best ({best['eval_reward']:.3g} at step "
                     f"{best['step']}) while the training reward rose "
                     f"({best['reward']:.3g} -> {trained[-1]['reward']:.3g})",
                     "the policy is exploiting the training prompts or the reward: read "
                     "samples.jsonl; raise KL_COEF, or train for fewer steps (MAX_STEPS; "
                     "EVAL_EVERY finds the best)")
    return None


def gradients(rows, cfg):
    """An update skipped for a NaN/inf reward or gradient, or grad_norm above GRAD_NORM_FACTOR x
    its median over the earlier steps."""
    if not rows:
        return None
    now = rows[-1]
    if now.get("skip_reason"):
        return Alarm("non-finite values", "skipped_updates", now.get("skipped_updates", 1),
                     f"({now['skip_reason']})",
                     "a reward or gradient was NaN/inf: check the reward function; lower "
                     "LEARNING_RATE, or DTYPE=bfloat16 rather than float16")
    earlier = [r["grad_norm"] for r in training_rows(rows[:-1]) if finite(r.get("grad_norm"))]
    if finite(now.get("grad_norm")) and len(earlier) >= GRAD_HISTORY:
        median = statistics.median(earlier)
        if median > 0 and now["grad_norm"] > GRAD_NORM_FACTOR * median:
            return Alarm("exploding gradients", "grad_norm", now["grad_norm"],
                         f"> {GRAD_NORM_FACTOR:g} x its median ({median:.3g})",
                         lr_advice(now, "a gradient far larger than the run's usual"))
    return None


# the progress bar's flag per check
SHORT = {"update too large": "update", "KL runaway": "kl", "entropy collapse": "entropy",
         "length collapse": "length", "critic not learning": "critic",
         "no learning signal": "signal", "reward hacking": "hacking",
         "non-finite values": "nan", "exploding gradients": "grad"}

CHECKS = (update_too_large, kl_runaway, entropy_collapse, length_collapse, critic_not_learning,
          no_signal, reward_hacking, gradients)


def check(rows, cfg):
    """Every check on rows (the step just logged last): the alarms that fire now."""
    return [alarm for fn in CHECKS for alarm in [fn(rows, cfg)] if alarm is not None]
