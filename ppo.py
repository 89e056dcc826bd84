"""PPO for causal language models (RLHF): generate -> score -> per-token KL rewards -> GAE ->
clipped updates.

    python ppo.py        # the embedded default: a tiny Qwen3 learns to write positive text
    python ppo.py --ACTOR_MODEL=Qwen/Qwen3-0.6B --CRITIC_MODEL=Qwen/Qwen3-0.6B \
        --REWARD_MODEL=OpenAssistant/reward-model-deberta-v3-large-v2 --DATASET=my_prompts.jsonl

Settings live in config.py (python ppo.py --help lists them); any of them can be overridden as
--NAME=value. --ALGORITHM=grpo|dr_grpo|dapo|reinforce|gspo|cispo runs GRPO, Dr. GRPO, DAPO,
REINFORCE, GSPO or CISPO through the same step(): they differ only by their traits in ALGORITHMS
(the models loaded, the advantage, where the KL goes, the loss). Every setting and input is checked
before any weight loads, each check beside what it checks in machinery/ (settings, data, models,
rewards, checkpoints, run files), which also holds the loading, the sampler, torchrun and the run's
files (docs/design.md).

Four models: the policy (trained), a frozen reference copy of it (KL penalty), a critic (trained; a
backbone with a scalar head read at every position) and a reward model (frozen; its own tokenizer)
or a reward function.

Follows the PPO-for-LMs recipe of Ziegler et al. 2019 (arXiv:1909.08593) and Ouyang et al. 2022,
with the implementation details catalogued by Huang et al. 2024, "The N+ Implementation Details of
RLHF with PPO" (arXiv:2403.17031), cited below as "N+ detail k". Deliberate departures:
  * The reward model reads decoded text re-tokenised with its own tokenizer, so the policy and
    reward model need not share a vocabulary (TRL's PPOTrainer requires one).
  * Sampling is our own KV-cached loop rather than `generate()`, so that no processor from a
    checkpoint's generation_config (Qwen3 ships top_k=20, top_p=0.95) silently changes the
    distribution the log-probs assume.
  * Trained models keep float32 weights and run under bf16 autocast on GPU; so does the reference (a
    frozen float32 copy, computed exactly as the policy, so that the KL at step 0 is 0: a bf16 copy
    differed by its rounding); the reward model is stored in bf16.
  * When each sample feeds exactly one update (grpo/dapo, PPO_EPOCHS=1, one minibatch) the rollout's
    policy forward is skipped and the update's own log-probs stand for the old ones, as TRL does
    with num_iterations=1.

Shape legend: B batch of sequences, Tp prompt length (left-padded), Tr response length, T = Tp + Tr,
V vocab.
"""

import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import partial
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn
import torch.utils.checkpoint

import config
from machinery import checkpoints
from machinery.checkpoints import check_output_dir
from machinery.data import (check_positions, check_same_data, check_vocabulary, data_fingerprint,
                            load_datasets, tokenize_datasets, uses_chat_template)
from machinery.distributed import (Ranks, check_same_weights, minibatch_plan, my_share, no_grad_for,
                                   shard_models, shard_summary, sharding_on, sum_gradients, whole)
from machinery.exits import Startup, Stop, Stops, commands_to_paste, what_next
from machinery.logs import RunLog
from machinery.models import (autocast, check_trained_models, dtype_copy, load_models,
                              load_tokenizer, output_layer_of, refresh_copy, resolve_devices,
                              resolve_dtype, rollout_copy_on, without_output_layer)
from machinery.rewards import RewardError, Scorer, check_scorers, non_finite_reward, reward_columns
from machinery.run_files import SaveError
from machinery.sampling import (concat_rollouts, eos_token_ids, left_pad, position_ids_from_mask,
                                sample, sample_and_score, select_rows, stream_indices,
                                uniforms_for)
from machinery.settings import (check_settings, config_files, embedded_tasks, load_config,
                                one_update, planned_steps, settings_help, settings_without_effect)


# ==================================================================================================
# Settings
# ==================================================================================================
# What each algorithm is, as traits that the code tests (never an algorithm's name), with its
# published defaults for the settings config.py leaves at None:
#   critic     a critic is trained, and gives GAE its values (PPO)
#   advantage  "gae" | "group-normalised" | "group-centred" | "leave-one-out" (advantages_for)
#   kl         where the KL to the reference goes: "reward" (a per-token or sequence penalty) or
#              "loss"
#   surrogate  the policy-gradient term (actor_loss): "clipped" (PPO's ratio clip), "gspo" (the
#              clip on a sequence's ratio), "cispo" (a clipped weight times log pi) or "plain" (the
#              policy gradient, one update on fresh samples)
#   groups     compares the GROUP_SIZE responses to each prompt, so needs at least 2
# Updates per batch: PPO makes 4 passes of minibatches of 8 (Ziegler et al.: 4 epochs; N+ detail 5);
# the critic-free algorithms one update on the whole batch, as GRPO's paper (one update per
# exploration stage, mu = 1 in its Algorithm 1), TRL's GRPOTrainer (num_iterations=1) and RLOO do:
# bench/family.py measured more passes to cost more time than they gained (docs/benchmarks.md,
# "Defaults chosen on a family of tasks").
def algorithm(critic, advantage, kl, surrogate, groups, **defaults):
    return SimpleNamespace(critic=critic, advantage=advantage, kl=kl, surrogate=surrogate,
                           groups=groups, defaults=defaults)


ONE_UPDATE = dict(PPO_EPOCHS=1, MINI_BATCH_SIZE=lambda s: s["BATCH_SIZE"] * s["GROUP_SIZE"])
FOUR_MINIBATCHES = dict(PPO_EPOCHS=1, MINI_BATCH_SIZE=lambda s: s["BATCH_SIZE"] * s["GROUP_SIZE"]
                        // 4)
GRPO = dict(KL_COEF=0.04, KL_ESTIMATOR="k3", LOSS_AGG="seq-mean-token-mean", CLIP_RANGE_HIGH=None,
            OVERLONG_BUFFER=0, DYNAMIC_SAMPLING=False, **ONE_UPDATE)
ALGORITHMS = {
    # Ziegler et al. 2019 / Ouyang et al. 2022: KL in the reward, token-level loss mean as in TRL
    # and OpenRLHF.
    "ppo": algorithm(True, "gae", "reward", "clipped", False, KL_COEF=0.05, KL_ESTIMATOR="k1",
                     LOSS_AGG="token-mean", CLIP_RANGE_HIGH=None, OVERLONG_BUFFER=0,
                     DYNAMIC_SAMPLING=False, PPO_EPOCHS=4, MINI_BATCH_SIZE=8),
    # Shao et al. 2024 (DeepSeekMath, arXiv:2402.03300) eq. 3: beta = 0.04 on a k3 KL in the loss,
    # each sequence's token mean averaged over the group.
    "grpo": algorithm(False, "group-normalised", "loss", "clipped", True, **GRPO),
    # Liu et al. 2025 (Dr. GRPO, arXiv:2503.20783): GRPO without its two normalisations, the group's
    # std in the advantage and each response's length in the loss, which is summed over tokens and
    # divided by the constant MAX_NEW_TOKENS (TRL's loss_type="dr_grpo"). Every other default is
    # GRPO's, so the two differ by exactly these.
    "dr_grpo": algorithm(False, "group-centred", "loss", "clipped", True,
                         **{**GRPO, "LOSS_AGG": "seq-mean-token-sum-norm"}),
    # Yu et al. 2025 (DAPO, arXiv:2503.14476): no KL, clip-higher eps_high = 0.28, token-level loss
    # (eq. 8), dynamic sampling. Departure: its overlong shaping (a penalty rising to 1 over the
    # last 4096 of 20480 tokens, against +-1 rule rewards, where few responses reach the limit) is
    # off unless OVERLONG_BUFFER is set, as in TRL's loss_type="dapo": its penalty is in reward
    # units and grows with the share of responses that reach the buffer, and where most do it
    # outweighs the reward (bench/family.py; docs/benchmarks.md).
    "dapo": algorithm(False, "group-normalised", "loss", "clipped", True, KL_COEF=0.0,
                      KL_ESTIMATOR="k3",
                      LOSS_AGG="token-mean", CLIP_RANGE_HIGH=0.28, OVERLONG_BUFFER=0,
                      DYNAMIC_SAMPLING=True, **ONE_UPDATE),
    # Williams 1992 with a baseline; leave-one-out as in Ahmadian et al. 2024 (RLOO,
    # arXiv:2402.14740), whose sequence-level loss sums log-probs over the response; KL in the
    # reward.
    "reinforce": algorithm(False, "leave-one-out", "reward", "plain", False, KL_COEF=0.05,
                           KL_ESTIMATOR="k1",
                           LOSS_AGG="seq-mean-token-sum", CLIP_RANGE_HIGH=None, OVERLONG_BUFFER=0,
                           DYNAMIC_SAMPLING=False, **ONE_UPDATE),
    # Zheng et al. 2025 (GSPO, arXiv:2507.18071) sec. 5.1: the clip on each sequence's
    # length-normalised ratio, 3e-4 below and 4e-4 above, no KL (as TRL's paper index and verl's
    # recipe set beta = 0), the loss averaged over sequences, and each batch split into 4
    # minibatches, since on one update per batch the ratio is 1 and GSPO is GRPO's gradient.
    "gspo": algorithm(False, "group-normalised", "loss", "gspo", True,
                      **{**GRPO, "KL_COEF": 0.0, "CLIP_RANGE_LOW": 3e-4, "CLIP_RANGE_HIGH": 4e-4,
                         **FOUR_MINIBATCHES}),
    # MiniMax 2025 (MiniMax-M1, arXiv:2506.13585) eq. 4-5: the clipped importance weight, without
    # a gradient, times A * log pi, over the batch's tokens, no KL. The paper sets no lower bound
    # (CLIP_RANGE_LOW = 1: a weight of 0) and tunes the upper one without publishing it: 0.28 here,
    # Trinity-RFT's default (DAPO's clip-higher). Off-policy minibatches as for GSPO.
    "cispo": algorithm(False, "group-normalised", "loss", "cispo", True,
                       **{**GRPO, "KL_COEF": 0.0, "LOSS_AGG": "token-mean", "CLIP_RANGE_LOW": 1.0,
                          "CLIP_RANGE_HIGH": 0.28, **FOUR_MINIBATCHES}),
}



# ==================================================================================================
# The equations: small pure functions, each unit-tested against a brute-force reference in tests/
# ==================================================================================================
def masked_mean(x, mask, dim=None):
    """Mean of x over the positions where mask is 1."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x, mask, unbiased=True):
    """Variance of x over the positions where mask is 1 (Bessel-corrected like
    lm-human-preferences/TRL)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp(min=1)
    return var


def masked_whiten(x, mask, shift_mean=True, eps=1e-8):
    """(x - mean) / std over valid positions only (N+ detail 19: padding must not enter the
    statistics)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def response_mask(response_ids, eos_ids):
    """1 for response tokens up to and including the first EOS, 0 after it. (B, Tr) -> mask (B, Tr),
    ended (B,)."""
    is_eos = torch.isin(response_ids, eos_ids)  # (B, Tr)
    eos_before = is_eos.long().cumsum(1) - is_eos.long()  # EOS tokens strictly before each position
    return (eos_before == 0).long(), is_eos.any(1)


def logprobs_from_logits(logits, tokens):
    """log softmax(logits)[token] per position, and the whole log-softmax (float32), which
    entropy_from_logprobs reads. (B, Tr, V), (B, Tr) -> (B, Tr), (B, Tr, V)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1), logp


def entropy_from_logprobs(logp):
    """Entropy per position from the log-softmax over the vocabulary: -sum_v exp(logp_v) logp_v. (B,
    Tr, V) -> (B, Tr). One pass over a log-softmax the caller already has, instead of a softmax and
    a logsumexp of its own."""
    return -(logp.exp() * logp).sum(-1)


# |log pi/pi_old| is clamped here before exp(), as verl's compute_policy_loss does
LOG_RATIO_LIMIT = 20.0


def kl_penalty(logp, ref_logp, estimator="k1"):
    """Per-token estimate of KL(pi || pi_ref) from samples of pi (Schulman,
    joschu.net/blog/kl-approx.html). k1 = log pi - log pi_ref: unbiased, can be negative (Ziegler et
    al. 2019 use this one). k3 = (r - 1) - log r with r = pi_ref / pi: unbiased, always >= 0, lower
    variance."""
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    # clamped before exp() (OpenRLHF, verl): a masked position must not overflow to inf
    if estimator == "k3":
        log_ratio = log_ratio.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}")


def per_token_rewards(scores, kl, mask, kl_coef):
    """r_t = -kl_coef * kl_t on every response token, plus the sequence score on its last valid
    token (Ziegler et al. 2019 eq. 2; N+ detail 13). (B,), (B, Tr), (B, Tr) -> (B, Tr)."""
    rewards = -kl_coef * kl * mask
    last = mask.sum(1).long() - 1  # index of the last valid token (the EOS when there is one)
    rewards[torch.arange(len(scores), device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards


def gae(rewards, values, mask, gamma, lam):
    """Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438) over valid tokens.
    Valid tokens form a prefix of each row; the value after the last valid token is 0 (the episode
    ended). Returns (advantages, returns), both (B, Tr); returns = advantages + values are the
    critic's targets."""
    values, rewards = values * mask, rewards * mask
    Tr = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(Tr)):
        next_value = values[:, t + 1] if t + 1 < Tr else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = (delta + gamma * lam * last_gae) * mask[:, t]
        advantages[:, t] = last_gae
    return advantages, advantages + values


def group_advantages(scores, group_size, eps=1e-4, scale=True):
    """GRPO's outcome advantage (Shao et al. 2024, sec. 4.1.2): (r - mean) / (std + eps) within each
    prompt's group of consecutive responses; std is Bessel-corrected and eps = 1e-4 as in TRL's
    GRPOTrainer. scale=False: r - mean alone (Dr. GRPO, Liu et al. 2025, which drops the std's
    weighting of easy and hard prompts). (B,) -> (B,)."""
    groups = scores.view(-1, group_size)
    centred = groups - groups.mean(1, keepdim=True)
    return (centred / (groups.std(1, keepdim=True) + eps) if scale else centred).view(-1)


def baseline_advantages(scores, group_size):
    """REINFORCE with a baseline: each score minus the mean of the *other* responses to the same
    prompt (leave-one-out, Kool et al. 2019; Ahmadian et al. 2024). With group_size 1 the others are
    the rest of the batch: leave-one-out again, so no score is its own baseline (which would shrink
    each advantage by 1 - 1/B). A batch of one has no other: its advantage is the score itself."""
    if group_size == 1:
        if len(scores) == 1:
            return scores.clone()
        group_size = len(scores)
    groups = scores.view(-1, group_size)
    others_mean = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others_mean).view(-1)


def advantages_for(algorithm, scores, kl, values, mask, kl_coef, gamma, lam, group_size):
    """Shaped scores (B,) -> per-token advantages (B, Tr): with the loss, the one place where the
    algorithms differ, by the `advantage` trait of ALGORITHMS[algorithm]:
      gae               per-token rewards (the KL penalty on each token, the score on the last),
                        GAE with the critic's values, whitened over valid tokens (N+ detail 19); the
                        returns (the critic's targets) come from the unwhitened advantages
      group-normalised  the group-normalised score on every token (Shao et al. 2024); the KL term,
      group-centred     if any, is in the loss; -centred: the score minus its group's mean (Liu et
                        al. 2025)
      leave-one-out     the sequence reward with the KL penalty (Ahmadian et al. 2024) minus the
                        leave-one-out baseline
    kl (B, Tr) or None. Returns (rewards, raw advantages, advantages, returns), returns None without
    a critic."""
    kind = ALGORITHMS[algorithm].advantage
    if kind == "gae":
        rewards = per_token_rewards(scores, kl if kl is not None else torch.zeros_like(mask), mask,
                                    kl_coef)
        raw, returns = gae(rewards, values, mask, gamma, lam)
        return rewards, raw, masked_whiten(raw, mask), returns
    if kind in ("group-normalised", "group-centred"):
        advantages = group_advantages(
            scores, group_size, scale=kind == "group-normalised")[:, None] * mask
        return scores, advantages, advantages, None
    rewards = scores - kl_coef * (kl.sum(1) if kl is not None else 0.0)
    advantages = baseline_advantages(rewards, group_size)[:, None] * mask
    return rewards, advantages, advantages, None


def uniform_groups(scores, group_size):
    """True for each group whose rewards are all equal: it has zero advantage everywhere, so no
    gradient (DAPO dynamic sampling drops these). (B,) -> (B / group_size,)."""
    groups = scores.view(-1, group_size)
    return groups.max(1).values == groups.min(1).values


def overlong_penalty(lengths, max_new_tokens, buffer):
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), with the generation limit
    max_new_tokens playing L_max + L_cache: 0 up to max_new_tokens - buffer tokens, then falling
    linearly to -1 at max_new_tokens."""
    if buffer == 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    return -((lengths.float() - (max_new_tokens - buffer)) / buffer).clamp(0.0, 1.0)


# The loss aggregations (LOSS_AGG): per-token weights w such that sum(w * per_token_loss) over a
# minibatch is its aggregated loss, computed for any slice of the minibatch from the minibatch's
# totals (n_tokens valid tokens, n_seqs sequences), so micro-batches add up exactly; horizon is
# MAX_NEW_TOKENS.
LOSS_AGGREGATIONS = {
    "token-mean": lambda mask, n_tokens, n_seqs, horizon: mask / n_tokens,  # PPO in TRL; DAPO eq. 8
    "seq-mean-token-mean":  # each sequence's token mean, averaged: GRPO eq. 3
        lambda mask, n_tokens, n_seqs,
        horizon: mask / (mask.sum(1, keepdim=True).clamp(min=1) * n_seqs),
    # REINFORCE: whole sequences
    "seq-mean-token-sum": lambda mask, n_tokens, n_seqs, horizon: mask / n_seqs,
    # each token sum over the constant horizon, averaged: Dr. GRPO (Liu et al. 2025)
    "seq-mean-token-sum-norm":
        lambda mask, n_tokens, n_seqs, horizon: mask / (horizon * n_seqs),
}
# the tables whose keys config.py's ALGORITHM and LOSS_AGG name (machinery/settings.py checks them)
TABLES = {"ALGORITHMS": ALGORITHMS, "LOSS_AGGREGATIONS": LOSS_AGGREGATIONS}


def shaped_scores(scores, ended, lengths, missing_eos_penalty, overlong_penalty_weight,
                  max_new_tokens, buffer):
    """The scores the advantages see: minus MISSING_EOS_PENALTY for a response that never ended (N+
    detail 23), plus DAPO's overlong shaping (overlong_penalty, weighted by OVERLONG_PENALTY). (B,)
    -> (B,)."""
    shaped = scores.clone()
    if missing_eos_penalty is not None:
        shaped = torch.where(ended, shaped, shaped - missing_eos_penalty)
    return shaped + overlong_penalty_weight * overlong_penalty(lengths, max_new_tokens, buffer)


def loss_weights(mask, mode, n_tokens, n_seqs, horizon=None):
    """LOSS_AGGREGATIONS[mode]'s per-token weights for a (micro-)batch's mask (b, Tr) -> (b, Tr)."""
    if mode not in LOSS_AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {mode!r}")
    return LOSS_AGGREGATIONS[mode](mask, n_tokens, n_seqs, horizon)


def token_share(x, mask, n_tokens):
    """A micro-batch's contribution to a token mean over its minibatch of n_tokens valid tokens, on
    x's device."""
    return (x * mask.to(x.device)).sum() / n_tokens.to(x.device)


def probability_ratio(logp, old_logp, mask=None):
    """pi / pi_old per token, from log-probs: masked positions get log-ratio 0 before exp(), and the
    log-ratio is clamped to +-LOG_RATIO_LIMIT (verl), so padding can never overflow into inf * 0 =
    NaN. (B, Tr) -> (B, Tr)."""
    log_ratio = logp - old_logp
    if mask is not None:
        log_ratio = torch.where(mask.bool(), log_ratio, 0.0)
    return torch.exp(log_ratio.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))


def rollout_correction(logp, rollout_logp, mask, mode="seq-mask", cap=3.0):
    """Importance weights for samples drawn by the rollout copy (ROLLOUT_COPY, in DTYPE) and trained
    as if drawn by the policy: w = pi_train / pi_rollout, per token or as the product over the
    sequence (the sum of log-ratios), then capped at `cap` ("cap": truncated IS, Ionides 2008) or
    set to 0 above it ("mask"), as TRL's vllm_importance_sampling_mode (default "sequence_mask",
    C = 3) and verl's rollout_is; the policy-gradient term of each token is multiplied by its
    weight. (B, Tr) x3 -> the weights (B, Tr), 0 at masked positions, and where the cap acted
    (B, Tr)."""
    # padding gets log-weight 0 before any sum or exp(), as in probability_ratio: an inf there
    # cannot turn a sequence's weight into NaN
    log_w = torch.where(mask.bool(), logp - rollout_logp, 0.0)
    if mode.startswith("seq"):
        log_w = log_w.sum(1, keepdim=True).expand_as(mask)
    w = torch.exp(log_w.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT))
    over = (w > cap).float() * mask
    w = w.clamp(max=cap) if mode.endswith("cap") else torch.where(w > cap, 0.0, w)
    return w * mask, over


def rollout_weights(logp, rollout_logp, mask, mode, cap):
    """(each token's weight for the loss, or None; the mismatch statistics): rollout_correction's
    weights where a rollout copy sampled (mode != "off"), rollout_mismatch's statistics where the
    policy's log-probs were computed (logp not None). (B, Tr) each."""
    stats = rollout_mismatch(logp, rollout_logp, mask) if logp is not None else {}
    if mode == "off":
        return None, stats
    weight, over = rollout_correction(logp, rollout_logp, mask, mode, cap)
    return weight, {**stats, "rollout_is_capped": masked_mean(over, mask)}


def rollout_mismatch(logp, rollout_logp, mask):
    """How far the sampler's log-probs of its tokens are from the trained policy's: the mean and the
    largest |log pi_train - log pi_rollout| over valid tokens (rollout_logprob_diff, _max). Rounding
    alone with no copy; a copy's 16-bit weights add their own."""
    diff = torch.where(mask.bool(), (logp - rollout_logp).abs(), 0.0)
    return {"rollout_logprob_diff": masked_mean(diff, mask), "rollout_logprob_diff_max": diff.max()}


def policy_loss(logp, old_logp, advantages, clip_low, clip_high=None, mask=None):
    """PPO clipped surrogate per token (Schulman et al. 2017 eq. 7), as a loss to minimise, with the
    ratio kept in [1 - clip_low, 1 + clip_high] (clip_high defaults to clip_low; DAPO's clip-higher
    sets it larger). All (B, Tr). The ratio comes from probability_ratio, so padding cannot turn the
    loss or its gradient into NaN. Returns (loss, clipped, ratio): clipped is 1 where the clipped
    branch was the active one."""
    clip_high = clip_low if clip_high is None else clip_high
    ratio = probability_ratio(logp, old_logp, mask)
    return (*clipped_surrogate(ratio, advantages, clip_low, clip_high), ratio)


def clipped_surrogate(ratio, advantages, clip_low, clip_high):
    """PPO's pessimistic bound per token, max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high)).
    Returns (loss, clipped): clipped is 1 where the clipped branch was the active one."""
    loss_unclipped = -advantages * ratio
    loss_clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    return torch.maximum(loss_unclipped, loss_clipped), (loss_clipped > loss_unclipped).float()


def gspo_loss(logp, old_logp, advantages, clip_low, clip_high=None, mask=None):
    """GSPO (Zheng et al. 2025, arXiv:2507.18071) eq. 5-7: the sequence's ratio s_i = (pi(y_i) /
    pi_old(y_i))^(1 / |y_i|), the exp of its mean token log-ratio, clipped to [1 - clip_low,
    1 + clip_high] in PPO's pessimistic bound with the sequence's advantage. Written per token as
    verl's GSPO-token with a constant advantage: log s_i,t = sg(log s_i) + log pi_t - sg(log pi_t),
    whose value is s_i at every token and whose gradient, averaged over the sequence's tokens
    (LOSS_AGG "seq-mean-token-mean"), is GSPO's s_i * mean_t grad log pi_t. All (B, Tr); masked
    positions count in no mean. Returns (loss, clipped, ratio) per token."""
    clip_high = clip_low if clip_high is None else clip_high
    valid = torch.ones_like(logp) if mask is None else mask.to(logp.dtype)
    log_ratio = torch.where(valid.bool(), logp - old_logp, 0.0)
    log_s = log_ratio.sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
    ratio = torch.exp((logp - logp.detach() + log_s.detach()).clamp(max=LOG_RATIO_LIMIT))
    loss, clipped = clipped_surrogate(ratio, advantages, clip_low, clip_high)
    return loss, clipped * valid, ratio


def cispo_loss(logp, old_logp, advantages, clip_low, clip_high=None, mask=None):
    """CISPO (MiniMax-M1, arXiv:2506.13585) eq. 4-5: -sg(clip(r, 1 - clip_low, 1 + clip_high)) *
    A * log pi per token. The clip bounds the weight, not the update: every token keeps a gradient,
    where PPO's clip gives a clipped token none. (B, Tr) -> (loss, clipped, ratio) per token, as
    policy_loss."""
    clip_high = clip_low if clip_high is None else clip_high
    ratio = probability_ratio(logp.detach(), old_logp, mask)
    weight = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    return -weight * advantages * logp, (weight != ratio).float(), ratio


def actor_loss(logp, old_logp, advantages, entropy, weights, mask, algorithm, clip_low, clip_high,
               entropy_coef=0.0, ref_logp=None, kl_coef=0.0, kl_estimator="k3", is_weight=None):
    """The policy's whole loss on a (micro-)batch, in one place as in CleanRL's ppo.py: the clipped
    surrogate (REINFORCE: the plain policy gradient), minus the entropy bonus, plus GRPO's KL term
    when ref_logp is given (Shao et al. 2024 eq. 3: beta * KL(pi || pi_ref) in the loss rather than
    the reward). Per-token terms are summed with `weights` (loss_weights: the aggregation and the
    minibatch's totals); is_weight (rollout_correction) scales the policy-gradient term of each
    token, as in TRL (the entropy and KL terms are the policy's own). All (b, Tr). Returns (loss,
    stats): policy_loss (and kl_loss) scalars, clipped and ratio per token for the statistics."""
    surrogate = ALGORITHMS[algorithm].surrogate
    if surrogate == "plain":
        pg, clipped = reinforce_loss(logp, advantages), torch.zeros_like(logp)
        # a statistic only: one update, no clipping
        ratio = probability_ratio(logp.detach(), old_logp, mask)
    elif surrogate == "gspo":
        pg, clipped, ratio = gspo_loss(logp, old_logp, advantages, clip_low, clip_high, mask)
    elif surrogate == "cispo":
        pg, clipped, ratio = cispo_loss(logp, old_logp, advantages, clip_low, clip_high, mask)
    else:
        pg, clipped, ratio = policy_loss(logp, old_logp, advantages, clip_low, clip_high, mask)
    if is_weight is not None:
        pg = pg * is_weight
    pg_loss = (pg * weights).sum()
    loss = pg_loss - entropy_coef * (entropy * weights).sum()
    stats = {"policy_loss": pg_loss, "clipped": clipped, "ratio": ratio}
    if ref_logp is not None:
        stats["kl_loss"] = (kl_penalty(logp, ref_logp, kl_estimator) * weights).sum()
        loss = loss + kl_coef * stats["kl_loss"]
    return loss, stats


def reinforce_loss(logp, advantages):
    """Plain policy gradient per token, -A * log pi (Williams 1992): one update on fresh samples, no
    ratio."""
    return -advantages * logp


def value_loss(values, old_values, returns, clip_range):
    """Clipped value loss per token, 0.5 * max((V - R)^2, (V_clip - R)^2) with V_clip kept within
    clip_range of the rollout values (N+ detail 22; lm-human-preferences train_policy.py).
    clip_range None: plain 0.5 (V - R)^2. Returns (loss, clipped)."""
    loss_unclipped = (values - returns) ** 2
    if clip_range is None:
        return 0.5 * loss_unclipped, torch.zeros_like(values)
    values_clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    loss_clipped = (values_clipped - returns) ** 2
    return 0.5 * torch.maximum(
        loss_unclipped, loss_clipped), (loss_clipped > loss_unclipped).float()


def explained_variance(values, returns, mask):
    """1 - Var(R - V) / Var(R) over valid tokens: 1 is a perfect critic, <= 0 one no better than a
    constant."""
    var_returns = masked_var(returns, mask)
    return 1 - masked_var(returns - values, mask) / var_returns.clamp(min=1e-8)


def make_optimizer(model, lr, weight_decay=0.0, eps=1e-5):
    """AdamW over the trainable parameters, eps 1e-5 as in the reference PPO implementations (N+
    detail 9; CleanRL's ppo.py). Weight decay 0 by default, as TRL and OpenRLHF (torch's own
    default, 0.01, pulls every weight toward 0 rather than toward the reference); when > 0, biases
    and norm weights (1-D parameters) are exempt, as in nanoGPT's configure_optimizers. fused=True:
    one kernel over all parameters; on a CPU torch otherwise loops over them in Python (3x slower
    for the default policy, 6% of a default step; bench/speed.py)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, eps=eps, fused=True)


class AdaptiveKLController:
    """Ziegler et al. 2019, sec. 2.2: beta <- beta * (1 + clip((KL - target) / target, -0.2, 0.2) *
    n / horizon)."""

    def __init__(self, init_kl_coef, target, horizon):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl, n_steps):
        if self.target is not None:
            error = float(np.clip(current_kl / self.target - 1, -0.2, 0.2))
            self.value *= 1 + error * n_steps / self.horizon




# ==================================================================================================
# The log-probs of the responses
# ==================================================================================================
def response_logprobs(model, input_ids, attention_mask, Tp, temperature, dtype=torch.float32,
                      entropy="grad", chunk=None):
    """Log-probs of the response tokens and the entropy at each response position, in one forward.
    (B, T) -> (B, Tr), (B, Tr). Logits are divided by the sampling temperature so they describe the
    distribution the tokens were drawn from (N+ detail 5). entropy: "grad" when it enters the loss
    (ENTROPY_COEF != 0); "value" when it is only a statistic (no graph, so the backward pass skips
    the vocabulary-wide terms it would add exact zeros from: a tenth of the update at an 8k
    vocabulary); None: not computed (the reference's). chunk (LOGPROB_CHUNK): when B * Tr is larger,
    the model's forward stops at the final hidden states and the output layer runs chunk positions
    at a time (chunked_logprobs), so that the (B, Tr, V) logits never exist whole."""
    device = next(model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    B, Tr = input_ids.shape[0], input_ids.shape[1] - Tp
    # Off-by-one: the logit at position i predicts token i+1, so the response tokens Tp .. T-1 are
    # predicted at positions Tp-1 .. T-2, the only ones whose logits are computed (no slice of them,
    # whose backward would fill and copy a vocabulary-wide gradient).
    keep = torch.arange(Tp - 1, Tp - 1 + Tr, device=device)
    head = output_layer_of(model) if chunk is not None and B * Tr > chunk else None
    with autocast(device, dtype), without_output_layer(head) if head else nullcontext():
        # no KV cache to keep; without the output layer, "logits" are the final hidden states
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                    position_ids=position_ids_from_mask(attention_mask), logits_to_keep=keep).logits
    if head:
        with autocast(device, dtype):
            return chunked_logprobs(head[2], out, input_ids[:, Tp:], temperature, chunk, entropy)
    return logprobs_and_entropy(out, input_ids[:, Tp:], temperature, entropy)


def logprobs_and_entropy(logits, tokens, temperature, entropy="grad"):
    """The tokens' log-probs under softmax(logits / temperature), and the entropy of each position's
    distribution (entropy as for response_logprobs). (..., V), (...) -> (...), (...) or None."""
    logits = logits.float()
    if temperature != 1.0:  # x / 1.0 is x: no copy of the logits
        logits = logits / temperature
    logp, logp_all = logprobs_from_logits(logits, tokens)
    if entropy is None:
        return logp, None
    with torch.set_grad_enabled(torch.is_grad_enabled() and entropy == "grad"):
        return logp, entropy_from_logprobs(logp_all)


def chunked_logprobs(head, hidden, tokens, temperature, chunk, entropy="grad"):
    """logprobs_and_entropy(head(hidden), ...) computed `chunk` positions at a time, so that the
    logits of at most `chunk` positions exist at once; with gradients, each chunk's logits are
    recomputed in the backward (torch.utils.checkpoint) rather than kept, so the backward also
    holds one chunk's at a time. The same arithmetic per position as the whole computation (the
    log-softmax is per position). As TRL's chunked LM head and Liger's fused linear cross-entropy,
    which chunk positions too. (B, Tr, H), (B, Tr) -> (B, Tr), (B, Tr) or None."""
    B, Tr, H = hidden.shape

    def piece(h, t):
        return logprobs_and_entropy(head(h), t, temperature, entropy)

    recompute = torch.is_grad_enabled() and hidden.requires_grad
    pieces = [torch.utils.checkpoint.checkpoint(piece, h, t, use_reentrant=False) if recompute
              else piece(h, t)
              for h, t in zip(hidden.reshape(B * Tr, H).split(chunk),
                              tokens.reshape(B * Tr).split(chunk))]
    logp = torch.cat([p[0] for p in pieces]).view(B, Tr)
    return logp, None if entropy is None else torch.cat([p[1] for p in pieces]).view(B, Tr)


def add_to(total, part):
    """Adds a dict of statistics into a running total, key by key."""
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v


# a sharded rank's stand-in micro-batch (its first row, at loss weight 0; minibatch_plan)
STAND_IN = torch.zeros(1, dtype=torch.long)


def step_statistics(*, step, scores, mask, ended, lengths, raw_advantages, entropy, update_stats,
                    seq_kl, kl_coef, kl, rewards, values, returns, group_size, counters, parts,
                    sampling):
    """One step's metrics (tensors or numbers; README, "Metrics"), in the order metrics.jsonl logs
    them: the reward, the advantage before whitening, the entropy and the update's statistics,
    lengths, the trainer's counters and clocks, then what the algorithm has: the kl (always the k1
    sum over the response, whatever estimator the reward or loss uses, so runs with different
    estimators and algorithms stay comparable) and, with per-token rewards (kl given), the penalty
    and the score apart; the critic's values and returns; each scorer's mean (parts); the spread
    within groups; dynamic sampling's counts."""
    out = {"step": step, "reward": scores.mean(), "reward_std": scores.std(),
           "advantage": masked_mean(raw_advantages, mask), "entropy": entropy, **update_stats,
           "response_length": lengths.mean(), "eos_fraction": ended.float().mean(), **counters}
    if seq_kl is not None:
        out.update(kl=seq_kl, kl_coef=kl_coef)
        if kl is not None:
            out.update(non_score_reward=(-kl_coef * kl).sum(1).mean(),
                       rlhf_reward=rewards.sum(1).mean())
    if values is not None:
        out.update(value=masked_mean(values, mask), **{"return": masked_mean(returns, mask)},
                   explained_variance=explained_variance(values, returns, mask))
    # each scorer's, before its weight
    out.update({f"reward_{name}": x.mean() for name, x in parts.items()})
    if group_size > 1:
        out["reward_std_in_group"] = scores.view(-1, group_size).std(1).mean()
    return {**out, **sampling}


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


class PPOTrainer:
    """PPO (and, through ALGORITHM, GRPO, DAPO, REINFORCE, GSPO and CISPO) for a causal LM: step()
    is one iteration, train() the run."""

    def __init__(self, cfg, log=print, ranks=None, config_files=()):
        self.cfg, self.log = cfg, log
        self.ranks = ranks or Ranks({})  # torchrun's processes; by default this one alone
        self.algorithm = ALGORITHMS[cfg.ALGORITHM]  # its traits
        check_settings(cfg, self.algorithm)
        # The reference loads when a KL term is used (a coefficient, or Ziegler's adaptive control)
        # or ALWAYS_LOAD_REFERENCE asks for the kl metric anyway.
        self.uses_kl = cfg.KL_COEF > 0 or (self.algorithm.critic and cfg.KL_TARGET is not None)
        self.has_reference = self.uses_kl or cfg.ALWAYS_LOAD_REFERENCE

        # 1. Every input is read and every model folder inspected before any weight loads.
        self.resume_from = check_output_dir(cfg, ALGORITHMS, log)  # a checkpoint, checked whole
        # The prompts as the policy sees them and scorers receive them (with SYSTEM_PROMPT), and the
        # datasets' other columns, which reward functions may take by name (an answer, say).
        self.prompts, self.columns, self.eval_prompts, self.eval_columns = load_datasets(cfg)
        check_trained_models(cfg, self.algorithm.critic)
        check_scorers(cfg, self.prompts, self.columns, self.eval_columns)
        # what a checkpoint records of the data: the prompts and the columns the rewards read
        self.data_fingerprint = data_fingerprint(
            self.prompts, reward_columns(cfg.REWARD_MODEL, self.columns))
        self.sharded = sharding_on(cfg.SHARDING, self.ranks.world)  # FSDP2
        self.devices = resolve_devices(cfg, torch.cuda.device_count(), self.ranks.local_rank,
                                       self.ranks.local_world, self.sharded)
        if self.devices["policy"].type == "cuda":
            torch.cuda.set_device(self.devices["policy"])  # NCCL's collectives run on it
        self.dtype = resolve_dtype(cfg.DTYPE, self.devices["policy"])
        checkpoints.seed_everything(cfg.SEED)
        self.tokenizer = load_tokenizer(cfg.ACTOR_MODEL, "ACTOR_MODEL", log)
        check_vocabulary(cfg, self.tokenizer)
        self.eos_ids = eos_token_ids(self.tokenizer, cfg.ACTOR_MODEL).to(self.devices["policy"])
        # every prompt through the chat template, tokenised (B prompts -> B lists of token ids)
        self.prompt_ids, self.prompts_truncated, self.eval_prompt_ids = tokenize_datasets(
            self.tokenizer, cfg, self.prompts, self.eval_prompts)
        check_positions(cfg, self.algorithm.critic, self.prompt_ids + (self.eval_prompt_ids or []))
        self.rollout_copy = rollout_copy_on(cfg, self.dtype, self.sharded)  # ROLLOUT_COPY
        template = self.tokenizer.chat_template if uses_chat_template(
            self.tokenizer, cfg.CHAT_TEMPLATE) else None
        for line in settings_without_effect(cfg, self.algorithm, template, self.rollout_copy,
                                            self.prompts, self.eval_prompts):
            log(f"notice: {line}")
        if cfg.RESUME:
            check_same_data(self.resume_from, self.data_fingerprint)
        log("settings:\n" + "\n".join(f"  {k} = {v!r}" for k, v in vars(cfg).items()))

        # 2. The models: the policy, its frozen reference (a float32 copy run as the policy is, so
        #    that the KL at step 0 is 0; with LoRA, the policy with its adapters off) when a KL term
        #    is used, the critic when the algorithm has one (machinery/models.py).
        self.policy, self.ref_policy, self.critic = load_models(
            cfg, self.algorithm.critic, self.has_reference, self.devices, self.dtype, self.sharded,
            log)
        # (model, the context in which it is the reference), or None
        self.reference = None if not self.has_reference else (self.ref_policy, nullcontext) \
            if not cfg.LORA_RANK else (self.policy, self.policy.disable_adapter)
        if cfg.RESUME:  # the checkpoint's weights, into the whole models
            checkpoints.load_weights(self.resume_from, self.trained_models())
        # the sampler's copy of the policy in DTYPE, refreshed after each update, or the policy
        self.rollout_policy = dtype_copy(self.policy, self.dtype) if self.rollout_copy else \
            self.policy
        shard_reward = shard_models([self.policy, self.ref_policy, self.critic], self.ranks,
                                    self.devices["policy"], self.dtype) if self.sharded else None
        self.scorer = Scorer(cfg.REWARD_MODEL, cfg.REWARD_WEIGHTS, self.devices["reward"],
                             self.dtype, shard_reward, cfg.REWARD_LABEL)
        # Sampling stops when every rank's rows have ended (a sharded model's forwards are
        # collectives); sharded, the output layer is not run apart from its model's forward, which
        # gathers its weights: log-probs are computed whole.
        self.all_done = (lambda finished: self.ranks.all(bool(finished.all()))) \
            if self.sharded else None
        self.logprob_chunk = None if self.sharded else cfg.LOGPROB_CHUNK
        # When each sample feeds exactly one optimizer step (one_update) and the KL, if any, is in
        # the loss, the update's own forward gives the rollout's log-probs and the rollout skips the
        # policy's (as TRL does with num_iterations=1); not with a rollout copy, whose samples'
        # weights (rollout_correction) need the policy's log-probs before the update.
        self.single_pass = self.algorithm.kl == "loss" and one_update(vars(cfg)) and \
            not self.rollout_copy
        # The critic's minibatch trains in a thread beside the policy's (update; sharded, after it);
        # on a CPU the two share its cores.
        on_cpu = {self.devices["policy"].type, self.devices["critic"].type} == {"cpu"}
        threaded = self.critic is not None and not self.sharded
        self.update_threads = max(1, torch.get_num_threads() // 2) if threaded and on_cpu else None
        self.critic_thread = ThreadPoolExecutor(
            1, thread_name_prefix="critic", initializer=torch.set_num_threads,
            initargs=(self.update_threads or torch.get_num_threads(),)) if threaded else None

        # 3. Optimisers (one per trained model: the two may sit on different devices), schedules,
        #    the KL controller, and what a run counts.
        self.optimizers = [make_optimizer(model, lr, cfg.WEIGHT_DECAY, cfg.ADAM_EPSILON)
                           for model, lr in ((self.policy, cfg.LEARNING_RATE),
                                             (self.critic, cfg.CRITIC_LEARNING_RATE))
                           if model is not None]
        self.total_steps = planned_steps(cfg, len(self.prompts))
        decay = (lambda s: 1 - s / self.total_steps) if cfg.LR_SCHEDULE == "linear" else \
            (lambda s: 1.0)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, decay) for opt in self.optimizers]
        self.kl_ctl = AdaptiveKLController(cfg.KL_COEF, cfg.KL_TARGET, cfg.KL_HORIZON)
        self.step_count = 0  # PPO steps done
        self.data_position = 0  # prompts consumed from the stream (stream_indices)
        self.responses_generated = 0  # dropped ones included
        self.skipped_updates, self.skipped_in_a_row = 0, 0  # the non-finite guard's counts
        self.timings, self.reward_truncated = Timings(self.devices), 0  # this step's (step())
        self.updating = False  # inside update(): a fault there leaves no step-start state to save
        self.step_start = None  # light_state() at the start of the step in progress
        self.saved_step = None  # step_count of the last checkpoint written or loaded
        self.logs = RunLog(cfg, self.ranks, log, config_files)
        if cfg.RESUME:
            state = checkpoints.load_training_state(self.resume_from, self.optimized(),
                                                    self.schedulers, self.sharded)
            self.restore_light_state(state)  # last: loading models may draw random numbers
            self.saved_step = self.step_count
            log(f"resuming from {self.resume_from} after step {self.step_count - 1}")

    # ---- what a checkpoint holds ----------------------------------------------------------------
    COUNTERS = ("step_count", "data_position", "responses_generated", "skipped_updates",
                "skipped_in_a_row")

    def light_state(self):
        """Counters, the KL coefficient and every random state: what a step changes besides weights
        and optimisers."""
        return {"counters": {k: getattr(self, k) for k in self.COUNTERS},
                "kl_coef": self.kl_ctl.value, "rng": checkpoints.random_states()}

    def restore_light_state(self, state):
        for k, v in state["counters"].items():
            setattr(self, k, v)
        self.kl_ctl.value = state["kl_coef"]
        checkpoints.restore_random_states(state["rng"])

    def trained_models(self):
        """The modules whose weights a checkpoint and the final folders hold."""
        return {"policy": self.policy, **({"critic": self.critic.model} if self.critic is not None
                                          else {})}

    def optimized(self):
        """(model, optimizer) pairs, in the order of self.optimizers."""
        return list(zip(filter(None, (self.policy, self.critic)), self.optimizers, strict=True))

    def save_checkpoint(self):
        checkpoints.save_checkpoint(self.cfg.OUTPUT_DIR, self.trained_models(), self.optimized(),
                                    self.schedulers, self.tokenizer, vars(self.cfg),
                                    self.data_fingerprint, self.light_state(), self.ranks,
                                    self.sharded)
        self.saved_step = self.step_count

    # ---- rollout ---------------------------------------------------------------------------------
    def next_prompts(self, n):
        indices = stream_indices(self.data_position, n, len(self.prompts), self.cfg.SEED)
        self.data_position += n
        return indices

    def generate(self, prompt_indices):
        """GROUP_SIZE responses to each prompt (a group is consecutive rows), sampled and scored.
        Keeps the sampled token ids: the policy's text is never re-tokenised. Under torchrun,
        prompt_indices are the whole batch's and this rank takes its share (whole groups), with the
        random numbers the whole batch's rows would get."""
        cfg, dev, tok, G = self.cfg, self.devices, self.tokenizer, self.cfg.GROUP_SIZE
        my_prompts = self.ranks.my_rows(len(prompt_indices))
        rows = [i for i in prompt_indices[my_prompts] for _ in range(G)]
        prompt_ids, prompt_mask = left_pad([self.prompt_ids[i] for i in rows], tok.pad_token_id)
        # (B, Tp)
        prompt_ids, prompt_mask = prompt_ids.to(dev["policy"]), prompt_mask.to(dev["policy"])
        uniforms = uniforms_for(cfg.SEED, self.data_position, len(prompt_indices) * G,
                                slice(my_prompts.start * G, my_prompts.stop * G))
        with self.timings("generate"), autocast(dev["policy"], self.dtype):
            response_ids, sample_logp = sample(
                self.rollout_policy, prompt_ids, prompt_mask, cfg.MAX_NEW_TOKENS, cfg.TEMPERATURE,
                self.eos_ids, tok.pad_token_id, uniforms, self.all_done,
                cfg.COMPILE_DECODE)  # (B, Tr) x2
        # (B, Tr): tokens after the first EOS are masked
        mask, ended = response_mask(response_ids, self.eos_ids)
        with self.timings("reward"):  # (B,) rewards, (B, number of scorers) each scorer's
            prompts = [self.prompts[i] for i in rows]
            # after EOS: pad, skipped
            responses = tok.batch_decode(response_ids, skip_special_tokens=True)
            # aligned with the responses
            columns = {k: [v[i] for i in rows] for k, v in self.columns.items()}
            # The reward model reads decoded text with its own tokenizer. A failure on any rank
            # stops every rank.
            scores, parts = self.ranks.on_every_rank(RewardError, self.scorer, prompts, responses,
                                                     columns)
            scores, parts = scores.to(dev["policy"]), parts.to(dev["policy"])
        self.reward_truncated += self.scorer.truncated
        self.responses_generated += len(prompt_indices) * G
        return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "response_ids": response_ids,
                "mask": mask, "sample_logp": sample_logp,
                "ended": ended, "scores": scores, "score_parts": parts, "prompt_index": rows,
                "prompts": prompts,
                "responses": responses}

    def rollout(self):
        """BATCH_SIZE groups of responses. With DYNAMIC_SAMPLING (DAPO sec. 3.2), groups whose
        rewards are all equal carry no learning signal: they are dropped and more prompts are
        sampled, for up to MAX_SAMPLING_ROUNDS extra rounds; if the batch is still short it trains
        on what it has (all of the last round if nothing was kept). Returns (rollout, the share of
        groups dropped and the rounds, with DYNAMIC_SAMPLING)."""
        cfg, G = self.cfg, self.cfg.GROUP_SIZE
        batch = self.generate(self.next_prompts(cfg.BATCH_SIZE))
        if not cfg.DYNAMIC_SAMPLING:
            return batch, {}
        kept, n_kept, generated, rounds = [], 0, 0, 0
        while True:
            rounds += 1
            generated += len(batch["prompts"]) // G
            keep = ~uniform_groups(batch["scores"], G)  # (groups,)
            rows = torch.nonzero(keep.repeat_interleave(G)).squeeze(1).cpu()
            if len(rows):
                kept.append(select_rows(batch, rows[:(cfg.BATCH_SIZE - n_kept) * G]))
                n_kept += len(kept[-1]["prompts"]) // G
            if n_kept == cfg.BATCH_SIZE or rounds > cfg.MAX_SAMPLING_ROUNDS:
                break
            batch = self.generate(self.next_prompts(cfg.BATCH_SIZE - n_kept))
        batch = concat_rollouts(kept, self.tokenizer.pad_token_id) if kept else batch
        return batch, {"groups_dropped": (generated - n_kept) / generated,
                       "sampling_rounds": rounds}

    # ---- forwards --------------------------------------------------------------------------------
    def rollout_forwards(self, input_ids, attention_mask, Tp):
        """The rollout under the policy (skipped in a single pass), the reference (the policy with
        its LoRA adapters off, where there are adapters) and the critic: (logp, entropy, ref_logp,
        values), each (B, Tr) or None, on the policy's device."""
        cfg, dev = self.cfg, self.devices
        logp = entropy = ref_logp = values = None
        with no_grad_for(self.policy):
            if not self.single_pass:
                logp, entropy = response_logprobs(self.policy, input_ids, attention_mask, Tp,
                                                  cfg.TEMPERATURE, self.dtype,
                                                  chunk=self.logprob_chunk)  # (B, Tr) x2
                logp = logp.clone()  # leave inference mode: it enters the loss
            # a frozen copy, or the policy with its LoRA adapters off
            if self.reference is not None:
                model, switch = self.reference
                with switch():
                    ref_logp = response_logprobs(model, input_ids, attention_mask, Tp,
                                                 cfg.TEMPERATURE, self.dtype, entropy=None,
                                                 chunk=self.logprob_chunk)[
                                                     0].to(dev["policy"]).clone()
            if self.critic is not None:
                values = self.critic_forward(input_ids, attention_mask, Tp).to(dev["policy"])
        return logp, entropy, ref_logp, values

    def critic_forward(self, input_ids, attention_mask, Tp):
        """Per-token values V(s_t) for the response tokens: the value at position Tp-1+t sees the
        prompt and the first t response tokens, i.e. the state in which token t is chosen. (B, T) ->
        (B, Tr)."""
        device = self.devices["critic"]
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        with autocast(device, self.dtype):
            # (B, T)
            values = self.critic(input_ids, attention_mask, position_ids_from_mask(attention_mask))
        return values[:, Tp - 1:-1]

    # ---- one step --------------------------------------------------------------------------------
    def step(self):
        """One PPO step: rollout -> guard -> forwards -> shaped scores and KL -> advantages ->
        update -> statistics. Returns (metrics, this rank's samples)."""
        cfg, G = self.cfg, self.cfg.GROUP_SIZE
        self.timings, self.reward_truncated = Timings(self.devices), 0  # this step's
        # 1. Rollout: GROUP_SIZE responses per prompt from the current policy, scored.
        batch, sampling = self.rollout()
        Tp = batch["prompt_ids"].shape[1]
        input_ids = torch.cat([batch["prompt_ids"], batch["response_ids"]], 1)  # (B, T)
        attention_mask = torch.cat([batch["prompt_mask"], batch["mask"]], 1)  # (B, T)
        # the guard: no update from a NaN/inf reward
        if reason := non_finite_reward(batch["scores"], batch["prompts"], batch["responses"],
                                       self.ranks):
            return self.skip_step(reason), []
        # 2. The rollout under the policy (skipped in a single pass), the reference and the critic.
        with self.timings("forward"):
            forwards = self.rollout_forwards(input_ids, attention_mask, Tp)
        # Under torchrun every rank gathers the whole batch (and trains on its own rows).
        mask, ended, scores, logp, entropy, ref_logp, values, sample_logp = self.ranks.all_rows(
            cfg.MAX_NEW_TOKENS, batch["mask"].float(), batch["ended"], batch["scores"], *forwards,
            batch["sample_logp"])
        # 3. Shaped scores: the reward minus the missing-EOS penalty (N+ detail 23) and DAPO's
        #    overlong shaping; the per-token KL to the reference.
        lengths = mask.sum(1)  # (B,)
        shaped = shaped_scores(scores, ended, lengths, cfg.MISSING_EOS_PENALTY,
                               cfg.OVERLONG_PENALTY, cfg.MAX_NEW_TOKENS, cfg.OVERLONG_BUFFER)
        kl = None if ref_logp is None or logp is None else \
            kl_penalty(logp, ref_logp, cfg.KL_ESTIMATOR) * mask  # (B, Tr)
        kl_coef = self.kl_ctl.value if self.uses_kl else 0.0
        # The sampler's log-probs against the policy's; a rollout copy's samples are reweighted.
        is_weight, rollout_stats = rollout_weights(
            logp, sample_logp, mask, cfg.ROLLOUT_CORRECTION if self.rollout_copy else "off",
            cfg.ROLLOUT_CORRECTION_CAP)  # (B, Tr) or None
        # 4. Advantages: with the loss, the one place where the algorithms differ.
        rewards, raw_advantages, advantages, returns = advantages_for(
            cfg.ALGORITHM, shaped, kl, values, mask, kl_coef, cfg.GAMMA, cfg.LAM, G)  # (B, Tr) each
        # 5. Update: PPO_EPOCHS passes over shuffled minibatches, on this rank's rows.
        lr = self.schedulers[0].get_last_lr()[0]  # this step's; the schedules move after the update
        with self.timings("update"):
            update_stats = self.update(my_share(
                self.ranks, Tp, input_ids=input_ids, attention_mask=attention_mask, mask=mask,
                advantages=advantages, lengths=lengths, logp=logp, ref_logp=ref_logp,
                values=values, returns=returns, is_weight=is_weight), Tp, lengths)
        # 6. Statistics, read back to the host only here at the end.
        update_kl = update_stats.pop("seq_kl", None)  # single pass: the kl of the update's forward
        seq_kl = None if ref_logp is None else update_kl if self.single_pass else \
            ((logp - ref_logp) * mask).sum(1).mean()
        if seq_kl is not None:
            self.kl_ctl.update(seq_kl.item(), len(scores))
        out = step_statistics(
            step=self.step_count, scores=scores, mask=mask, ended=ended, lengths=lengths,
            raw_advantages=raw_advantages, update_stats=update_stats, seq_kl=seq_kl,
            entropy=update_stats["update_entropy"] if self.single_pass else
            masked_mean(entropy, mask), kl_coef=kl_coef, kl=kl if self.algorithm.critic else None,
            rewards=rewards, values=values, returns=returns, group_size=G,
            counters=self.counters(batch, lengths, lr), parts=self.score_parts(batch),
            sampling={**sampling, **rollout_stats})
        self.step_count += 1
        return {k: (v.item() if torch.is_tensor(v) else v) for k, v in out.items()}, \
            self.samples(batch)

    # ---- a step's records ------------------------------------------------------------------------
    def samples(self, batch):
        """This rank's rows, for samples.jsonl."""
        return [{"step": self.step_count - 1, "prompt": p, "response": r, "reward": s}
                for p, r, s in zip(batch["prompts"], batch["responses"], batch["scores"].tolist())]

    def counters(self, batch, lengths, lr):
        """The step's counters, learning rate and clocks (the time_* metrics)."""
        G, seconds, elapsed = self.cfg.GROUP_SIZE, self.timings.seconds, self.timings.elapsed()
        truncated = [self.reward_truncated,
                     sum(self.prompts_truncated[i] for i in batch["prompt_index"]) // G]
        if self.ranks.active:  # every rank's
            truncated = self.ranks.sum_(torch.tensor(truncated)).tolist()
        return {"reward_truncated": truncated[0], "prompts_truncated": truncated[1],
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

    def evaluate(self):
        """EVAL_SAMPLES responses to each held-out prompt from the current policy, scored: the
        eval_* metrics, with sample_and_score (machinery/sampling.py), as evaluate.py. Its random
        numbers are fixed, apart from training's, so evaluations are comparable across steps and a
        run trains the same with or without them. Under torchrun each rank takes an equal share of
        the rows, the last ones' padded with repeats of row 0 (so that all run the same forwards,
        which sharded models need), and the padding goes after the gather."""
        cfg, dev, world = self.cfg, self.devices["policy"], self.ranks.world
        n = len(self.eval_prompts) * cfg.EVAL_SAMPLES
        share = -(-n // world)
        rows = [r for r in range(self.ranks.rank * share, (self.ranks.rank + 1) * share) if r < n]
        rows += [0] * (share - len(rows))
        clock = Timings(self.devices)
        scores, parts, lengths, _ = self.ranks.on_every_rank(
            RewardError, sample_and_score, self.policy, self.tokenizer, self.eos_ids,
            self.eval_prompt_ids, self.eval_prompts, self.eval_columns, self.scorer, cfg, dev,
            self.dtype, rows,
            self.all_done)
        scores, parts, lengths = (self.ranks.gather_rows(x.float())[:n]
                                  for x in (scores, parts, lengths))
        out = {"eval_reward": scores.mean().item(),
               "eval_reward_se": (scores.std() / n ** 0.5).item(),
               "eval_response_length": lengths.float().mean().item()}
        if len(self.scorer.names) > 1:
            out.update({f"eval_reward_{name}": parts[:, j].mean().item() for j,
                        name in enumerate(self.scorer.names)})
        out["time_eval"] = clock.elapsed()
        return out

    def update(self, rollout, Tp, lengths):
        """PPO_EPOCHS passes over the rollout in shuffled minibatches of MINI_BATCH_SIZE sequences,
        each one optimizer step of the policy and one of the critic. A minibatch's gradient is
        accumulated over micro-batches whose losses carry the minibatch's totals (loss_weights), so
        it is exactly the minibatch's however it is split. The two models share no weights and no
        loss: the critic's minibatch runs in a thread of its own beside the policy's (a sixth of a
        PPO step on 2 CPU cores: docs/benchmarks.md), with the same arithmetic (tested).
        Under torchrun every rank draws the same shuffles and runs the rows of each minibatch it
        holds; the gradients are summed over the ranks before each step (minibatch_plan,
        optimizer_step). lengths (B,): all ranks' response lengths. Returns the mean statistics of
        the steps taken; the learning-rate schedules then move one step."""
        cfg = self.cfg
        self.updating = True  # from here on a fault may leave the weights half-way through a step
        plan = minibatch_plan(lengths, rollout["lengths"], cfg.PPO_EPOCHS, cfg.MINI_BATCH_SIZE,
                              cfg.MICRO_BATCH_SIZE, cfg.MICRO_BATCH_TOKENS, Tp, self.ranks,
                              self.sharded)
        steps = {"policy": [], "critic": []}  # each minibatch's statistics, None where skipped
        threads = torch.get_num_threads()
        if self.update_threads:  # the two loops share the CPU's cores rather than oversubscribe it
            torch.set_num_threads(self.update_threads)
        try:
            for micros, n_tokens, n_seqs, stand_ins in plan:
                mb = (rollout, micros, Tp, n_tokens, stand_ins)
                critic = self.critic_thread.submit(self.critic_minibatch, *mb) \
                    if self.critic_thread else None
                # the policy: actor_loss and backward on each micro-batch, then one clipped step
                mb_stats = {}
                for micro in micros:
                    add_to(mb_stats, self.policy_gradients(rollout, micro, Tp, n_tokens, n_seqs))
                for _ in range(stand_ins):  # sharded: a row of weight 0, as many passes as others
                    self.policy_gradients(rollout, STAND_IN, Tp, n_tokens, n_seqs, weight=0.0)
                steps["policy"].append(self.optimizer_step(
                    self.policy, self.optimizers[0], cfg.MAX_GRAD_NORM, "grad_norm", mb_stats))
                if self.critic is not None:  # sharded: after the policy, its collectives in order
                    steps["critic"].append(critic.result() if critic else
                                           self.critic_minibatch(*mb))
        finally:
            torch.set_num_threads(threads)
        stats = {}
        for name, taken in steps.items():
            applied, total = [s for s in taken if s is not None], {}
            for s in applied:
                add_to(total, s)
            stats.update({k: v / len(applied) for k, v in total.items()})
            if len(applied) < len(taken):
                self.count_skipped(f"{len(taken) - len(applied)} of {len(taken)} minibatch updates "
                                   f"of the {name} were skipped (non-finite gradient)",
                                   len(taken) - len(applied))
        if any(s is not None for s in steps["policy"]):  # the policy took at least one step
            self.skipped_in_a_row = 0
        for schedule in self.schedulers:
            schedule.step()
        if self.rollout_copy:  # the sampler's copy takes the new weights
            refresh_copy(self.rollout_policy, self.policy)
        return self.ranks.sum_statistics(stats, self.devices["policy"]) if self.ranks.active \
            else stats

    def critic_minibatch(self, rollout, micros, Tp, n_tokens, stand_ins):
        """The critic's side of a minibatch: value_loss and backward on each micro-batch (and on
        stand-in rows of weight 0), then one clipped step. Returns its statistics, or None where the
        step was skipped."""
        mb_stats = {}
        for micro in micros:
            add_to(mb_stats, self.critic_gradients(rollout, micro, Tp, n_tokens))
        for _ in range(stand_ins):
            self.critic_gradients(rollout, STAND_IN, Tp, n_tokens, weight=0.0)
        return self.optimizer_step(self.critic, self.optimizers[-1], self.cfg.CRITIC_MAX_GRAD_NORM,
                                   "critic_grad_norm", mb_stats)

    def optimizer_step(self, model, optimizer, max_norm, norm_name, mb_stats):
        """One model's step on its accumulated gradient: summed over the ranks, clipped to max_norm
        (None: the norm is only measured), and applied only if its norm is finite (a NaN/inf
        gradient skips the step and leaves the weights as they were; one host sync). Returns the
        minibatch's statistics with the norm, on the policy's device, or None where skipped."""
        if self.ranks.active and not self.sharded:  # sharded, the backward reduce-scattered them
            # the critic's over a group of its own: it may run in its thread beside the policy's
            sum_gradients(model, self.ranks, self.ranks.critic_group if model is self.critic
                          else None)
        norm = nn.utils.clip_grad_norm_(model.parameters(),
                                        float("inf") if max_norm is None else max_norm)
        mb_stats[norm_name] = whole(norm) if self.sharded else norm
        finite = bool(torch.isfinite(mb_stats[norm_name]))
        if finite:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {k: v.detach().to(self.devices["policy"], torch.float32)
                for k, v in mb_stats.items()} if finite else None

    @staticmethod
    def micro_batch(rollout, idx, Tp):
        """Rows idx of the rollout, cut after the longest response among them (later columns are all
        masked): (ids, attention mask, {per-token rollout tensors})."""
        Tr = int(rollout["lengths"][idx].max())
        ids, attn = rollout["input_ids"][idx, :Tp + Tr], rollout["attention_mask"][idx, :Tp + Tr]
        old = {k: v[idx, :Tr] for k, v in rollout.items()
               if k not in ("input_ids", "attention_mask", "lengths")}
        return ids, attn, old

    def policy_gradients(self, rollout, idx, Tp, n_tokens, n_seqs, weight=1.0):
        """The policy's forward, loss (actor_loss) and backward on one micro-batch (rows idx of the
        rollout), weighted with the minibatch's totals (loss_weights); weight scales the loss (0: a
        sharded rank's stand-in row). Returns this micro-batch's share of each statistic."""
        cfg = self.cfg
        ids, attn, old = self.micro_batch(rollout, idx, Tp)
        mask = old["mask"]  # (b, Tr)
        weights = loss_weights(mask, cfg.LOSS_AGG, n_tokens, n_seqs, cfg.MAX_NEW_TOKENS)  # (b, Tr)
        share = partial(token_share, mask=mask, n_tokens=n_tokens)
        logp, entropy = response_logprobs(self.policy, ids, attn, Tp, cfg.TEMPERATURE, self.dtype,
                                          "grad" if cfg.ENTROPY_COEF else "value",
                                          self.logprob_chunk)  # (b, Tr)
        stats = {}
        if self.single_pass:  # the samples' log-probs are these (the ratio is 1, its gradient not)
            old["logp"] = logp.detach()
            if "ref_logp" in old:  # the kl metric, which the skipped rollout forward would give
                stats["seq_kl"] = ((old["logp"] - old["ref_logp"]) * mask).sum() / n_seqs
        kl_in_loss = self.algorithm.kl == "loss" and self.uses_kl
        loss, terms = actor_loss(logp, old["logp"], old["advantages"], entropy, weights, mask,
                                 cfg.ALGORITHM, cfg.CLIP_RANGE_LOW, cfg.CLIP_RANGE_HIGH,
                                 cfg.ENTROPY_COEF, old["ref_logp"] if kl_in_loss else None,
                                 self.kl_ctl.value, cfg.KL_ESTIMATOR, old.get("is_weight"))
        (loss * weight).backward()
        clipped, ratio = terms.pop("clipped"), terms.pop("ratio")
        with torch.no_grad():  # approx_kl: k3 estimate of KL(old || new) from the old samples
            stats.update(terms, update_entropy=share(entropy), clipfrac=share(clipped),
                         clipfrac_low=share(clipped * (ratio < 1)),
                         clipfrac_high=share(clipped * (ratio > 1)),
                         ratio=share(ratio), approx_kl=share(kl_penalty(old["logp"], logp, "k3")))
        return stats

    def critic_gradients(self, rollout, idx, Tp, n_tokens, weight=1.0):
        """The critic's forward, clipped value loss (value_loss, a token mean over the minibatch
        whatever LOSS_AGG says for the policy) and backward on one micro-batch. Returns its
        statistics."""
        critic_dev = self.devices["critic"]
        ids, attn, old = self.micro_batch(rollout, idx, Tp)
        share = partial(token_share, mask=old["mask"], n_tokens=n_tokens)
        values = self.critic_forward(ids, attn, Tp)  # (b, Tr) on the critic's device
        vf, vf_clipped = value_loss(values, old["values"].to(critic_dev),
                                    old["returns"].to(critic_dev), self.cfg.VALUE_CLIP_RANGE)
        vf_loss = share(vf)
        (vf_loss * weight).backward()
        return {"value_loss": vf_loss, "value_clipfrac": share(vf_clipped)}

    # ---- the run ---------------------------------------------------------------------------------
    def train(self, commands=("python ppo.py <the same settings> --RESUME=True",
                              "python ppo.py <the same settings> --OVERWRITE=True")):
        """step() to the end, with evaluations, checkpoints and charts on their schedules; returns
        0, or the exit code of an early stop (machinery/exits.py: 1 a fault, 3 a health alarm with
        HEALTH="stop", 130/143 a signal), saved where it can be. `commands`: (resume, restart), the
        command lines to paste that go on from a checkpoint or start again without one."""
        cfg, logs = self.cfg, self.logs
        self.commands = commands
        with Stops(self.stop_early, self.roll_back, lambda: self.step_count, cfg.DEBUG,
                   self.sharded, self.log) as stops:
            try:
                logs.start(self.step_count, self.total_steps)
                while self.step_count < self.total_steps:
                    self.step_start, self.updating = self.light_state(), False  # for a rollback
                    # of the policy step() samples from
                    evaluation = self.evaluate() if self.evaluation_due() else {}
                    metrics, samples = self.step()
                    metrics.update(evaluation)
                    last = self.step_count == self.total_steps or (
                        cfg.MAX_RESPONSES is not None
                        and self.responses_generated >= cfg.MAX_RESPONSES)
                    alarms = logs.write(metrics, samples, last)
                    if cfg.HEALTH == "stop" and self.ranks.any(bool(alarms)):
                        raise Stop.health_alarm(metrics["step"])  # saved; resumed, it goes on
                    if self.skipped_in_a_row >= cfg.MAX_SKIPPED_IN_A_ROW:  # the NaN guard gives up
                        raise Stop.non_finite(self.skipped_in_a_row, metrics.get("skip_reason"))
                    if last:
                        break
                    stops.after_step(self.ranks, metrics["step"])  # a signal to any rank stops all
                    if self.step_count % cfg.SAVE_EVERY == 0:
                        self.save_checkpoint()
                    if self.step_count % cfg.PLOT_EVERY == 0:
                        logs.plot()
                self.finish()
                stops.at_the_end(cfg.OUTPUT_DIR)
            finally:
                logs.close()
        if stops.code == 0:
            logs.summary()
            self.log(f"done in {time.time() - logs.t0:.0f}s; outputs in {cfg.OUTPUT_DIR}/ "
                     "(ppo_metrics.png, training_metrics.png, metrics.jsonl, samples.jsonl, "
                     f"policy/{', critic/' if self.critic is not None else ''})")
        return stops.code

    def finish(self):
        """The last checkpoint (a later --RESUME=True with a larger MAX_STEPS continues from it),
        the final policy's evaluation as a row of its own, the charts, and the policy and critic
        folders."""
        if self.ranks.active and not self.sharded:  # (sharded, they hold one copy between them)
            check_same_weights(self.ranks, [self.policy, self.critic], self.log)
        self.save_checkpoint()
        if self.eval_prompts is not None:
            self.step_start = None  # a fault here leaves the saved checkpoint as it is
            row = {"step": self.step_count, **self.evaluate()}
            self.logs.check_health(row)
            self.logs.row(row)
        self.logs.plot()
        checkpoints.save_final(self.cfg, self.trained_models(), self.tokenizer, self.dtype,
                               self.ranks, self.sharded)

    def roll_back(self):
        """After a fault: the counters and random states of the step's start, unless its update had
        begun (the weights are then half-way through a step). Returns whether it rolled back."""
        if self.step_start is None or self.updating:
            return False
        self.restore_light_state(self.step_start)
        return True

    def stop_early(self, message, code, save=True, go_on=True):
        """Saves the checkpoint (save=False: keeps the last one), redraws the charts, says why it
        stopped and (go_on) the command that continues the run, or, where no checkpoint was ever
        written, the one that starts it again; returns the exit code."""
        if save:
            try:
                self.save_checkpoint()
            except SaveError as e:
                save, message = False, f"{message}\nerror: {e}"
        self.logs.plot()
        self.logs.say(message + (what_next(save, self.saved_step, self.commands) if go_on else ""))
        return code

    def evaluation_due(self):
        """At step 0, every EVAL_EVERY steps, and (finish) at the end."""
        every = self.cfg.EVAL_EVERY
        return self.eval_prompts is not None and (self.step_count == 0
                                                  or bool(every and self.step_count % every == 0))

    def count_skipped(self, what, n=1):
        """The non-finite guard's bookkeeping for n updates it did not apply."""
        self.skipped_updates += n
        self.skipped_in_a_row += n
        self.log(f"warning: step {self.step_count}: {what}")

    def skip_step(self, reason):
        """A step whose update the guard skipped: counted and logged; the schedules still move."""
        self.count_skipped(f"update skipped ({reason})")
        with warnings.catch_warnings():  # a schedule stepped before any optimizer step, on purpose
            warnings.filterwarnings("ignore",
                                    message="Detected call of `lr_scheduler.step\\(\\)` before")
            for sched in self.schedulers:
                sched.step()
        self.step_count += 1
        return {"step": self.step_count - 1, "skipped_updates": self.skipped_updates,
                "skip_reason": reason, "responses_generated": self.responses_generated}


def main(argv):
    """python ppo.py [CONFIG.py ...] [--NAME=value ...], or under torchrun (data parallel; FSDP2
    with SHARDING). Returns the exit code: 0 done, 1 a fault (saved where it could be), 2 refused
    before any work, 3 a health alarm (HEALTH="stop"), 130/143 interrupted (machinery/exits.py)."""
    if "--help" in argv or "-h" in argv:
        print(settings_help(config, TABLES))
        return 0
    with Startup(argv) as start:  # a refusal: one line and exit 2, nothing left behind
        cfg = load_config(argv, TABLES, start.log)
        check_settings(cfg, ALGORITHMS[cfg.ALGORITHM])
        start.lock(cfg, ALGORITHMS[cfg.ALGORITHM], config_files(argv))
        for task in embedded_tasks(cfg, ALGORITHMS[cfg.ALGORITHM].critic):
            if start.ranks.writes:
                task.build()  # the embedded tasks' models, built once and cached
        start.ranks.barrier()
        trainer = PPOTrainer(cfg, start.log, start.ranks, config_files(argv))
    if start.code is not None:
        return start.code
    start.ranks.barrier()  # every rank has checked OUTPUT_DIR before rank 0 writes into it
    ranks = start.ranks
    start.log(f"devices: {', '.join(f'{k}={v}' for k, v in trainer.devices.items())}; dtype "
              f"{trainer.dtype}; {len(trainer.prompts)} prompts, {trainer.total_steps} steps"
              + (f"; {ranks.world} processes, {cfg.BATCH_SIZE // ranks.world} prompts each"
                 if ranks.active else "")
              + (f"; every model sharded over the {ranks.world} process(es) (FSDP2)"
                 if trainer.sharded else ""))
    if trainer.sharded:
        models = {"policy": trainer.policy, "reference": trainer.ref_policy,
                  "critic": trainer.critic, **trainer.scorer.models()}
        start.log("parameters held by each process: "
                  + shard_summary({k: v for k, v in models.items() if v is not None}))
    code = trainer.train(commands_to_paste(argv, ranks))
    start.finish()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
