"""GRPO, DAPO and REINFORCE pieces against hand-checked numbers and brute-force references, and a
smoke run of every algorithm through the same trainer."""
import math

import numpy as np
import pytest
import torch

import ppo
from machinery.script import Refusal
from conftest import check_settings, load_config, tiny_args


def test_group_advantages_hand_checked():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 1.0, 2.0, 2.0])
    adv = ppo.group_advantages(scores, 4)
    s1 = math.sqrt(1 / 3)  # Bessel-corrected std of [1, 0, 0, 1]
    expected = [0.5 / (s1 + 1e-4), -0.5 / (s1 + 1e-4)] * 2
    np.testing.assert_allclose(adv[:4].numpy(),
                               [expected[0], expected[1], expected[1], expected[0]], rtol=1e-6)
    assert (adv[4:8] == 0).all()  # a uniform group has no advantage
    g = np.array([3.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(adv[8:].numpy(), (g - g.mean()) / (g.std(ddof=1) + 1e-4), rtol=1e-6)


def test_baseline_advantages_leave_one_out_and_batch_mean():
    adv = ppo.baseline_advantages(torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 8.0]), 3)
    # 1 - mean(2, 3) = -1.5; 2 - mean(1, 3) = 0; 3 - mean(1, 2) = 1.5; 5 - 6.5; 5 - 6.5; 8 - 5
    np.testing.assert_allclose(adv.numpy(), [-1.5, 0.0, 1.5, -1.5, -1.5, 3.0])
    # GROUP_SIZE=1: leave-one-out over the batch, 1 - mean(2, 6) = -3, 2 - mean(1, 6) = -1.5, 6 -
    # mean(1, 2) = 4.5 (the batch mean including the score itself gave [-2, -1, 3]: each advantage
    # shrunk by 1 - 1/B)
    np.testing.assert_allclose(ppo.baseline_advantages(torch.tensor([1.0, 2.0, 6.0]), 1).numpy(),
                               [-3, -1.5, 4.5])
    # no other: no baseline
    assert ppo.baseline_advantages(torch.tensor([0.7]), 1).tolist() == pytest.approx([0.7])
    scores = torch.randn(20, generator=torch.Generator().manual_seed(0))
    loo = ppo.baseline_advantages(scores, 5).view(4, 5)
    for i in range(4):  # brute force: each score minus the mean of the others
        for j in range(5):
            others = [scores[i * 5 + k].item() for k in range(5) if k != j]
            assert loo[i, j].item() == pytest.approx(scores[i * 5 + j].item() - sum(others) / 4,
                                                     abs=1e-6)


def test_uniform_groups():
    scores = torch.tensor([1.0, 1.0, 0.5, 0.5, 0.0, 1.0])
    assert ppo.uniform_groups(scores, 2).tolist() == [True, True, False]


def test_overlong_penalty_follows_dapo_eq_13():
    lengths = torch.tensor([5, 12, 13, 14, 16])
    # limit 16, buffer 4: free up to 12 tokens, then -1/4 per token, -1 at the limit
    assert ppo.overlong_penalty(lengths, 16, 4).tolist() == [0.0, 0.0, -0.25, -0.5, -1.0]
    assert ppo.overlong_penalty(lengths, 16, 0).tolist() == [0.0] * 5


@pytest.mark.parametrize("mode", ppo.LOSS_AGGREGATIONS)
def test_loss_aggregations_match_brute_force_and_split_exactly(mode):
    gen = torch.Generator().manual_seed(1)
    lengths = [3, 1, 5, 2]
    mask = torch.tensor([[1.0] * n + [0.0] * (5 - n) for n in lengths])
    loss = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    rows = [loss[i, :n].tolist() for i, n in enumerate(lengths)]
    expected = {
        "token-mean": sum(map(sum, rows)) / sum(lengths),
        "seq-mean-token-mean": sum(sum(r) / len(r) for r in rows) / len(rows),
        "seq-mean-token-sum": sum(sum(r) for r in rows) / len(rows),
        # over the horizon, 5 tokens
        "seq-mean-token-sum-norm": sum(sum(r) / 5 for r in rows) / len(rows),
    }[mode]
    n_tokens, n_seqs = mask.sum(), 4
    whole = (loss * ppo.loss_weights(mask, mode, n_tokens, n_seqs, 5)).sum().item()
    assert whole == pytest.approx(expected)
    halves = sum((loss[s] * ppo.loss_weights(mask[s], mode, n_tokens, n_seqs, 5)).sum().item()
                 for s in (slice(0, 1), slice(1, 4)))
    assert halves == pytest.approx(expected)


def test_clip_higher_is_asymmetric():
    old = torch.zeros(4)
    logp = torch.log(torch.tensor([1.25, 1.25, 0.75, 0.78]))
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    _, sym, _ = ppo.policy_loss(logp, old, adv, 0.2)
    _, asym, _ = ppo.policy_loss(logp, old, adv, 0.2, 0.28)
    assert sym.tolist() == [1.0, 1.0, 1.0, 1.0]
    # 1.25 < 1 + 0.28 is free; the low side still clips below 0.8
    assert asym.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_reinforce_loss_gradient_is_advantage_weighted_score_function():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    ppo.reinforce_loss(logp, torch.tensor([2.0, -3.0])).sum().backward()
    assert logp.grad.tolist() == [-2.0, 3.0]


def test_algorithm_defaults_resolve_and_overrides_win():
    dapo = load_config(["--ALGORITHM=dapo", "--GROUP_SIZE=4", "--MAX_NEW_TOKENS=20"])
    assert (dapo.KL_COEF, dapo.CLIP_RANGE_LOW, dapo.CLIP_RANGE_HIGH, dapo.LOSS_AGG,
            dapo.OVERLONG_BUFFER,
            # overlong shaping only when asked
            dapo.DYNAMIC_SAMPLING) == (0.0, 0.2, 0.28, "token-mean", 0, True)
    grpo = load_config(["--ALGORITHM=grpo", "--GROUP_SIZE=4"])
    assert (grpo.KL_COEF, grpo.KL_ESTIMATOR, grpo.LOSS_AGG, grpo.CLIP_RANGE_HIGH) == (
        0.04, "k3", "seq-mean-token-mean", 0.2)
    assert load_config([]).KL_COEF == 0.05
    assert load_config([]).LOSS_AGG == "token-mean"
    # Updates per batch: ppo 4 passes of minibatches of 8; the critic-free algorithms one update on
    # the whole batch.
    assert ((load_config([]).PPO_EPOCHS, load_config([]).MINI_BATCH_SIZE)
            == (4, 8))
    for name, algorithm in (("grpo", grpo), ("dapo", dapo)):
        assert (algorithm.PPO_EPOCHS, algorithm.MINI_BATCH_SIZE) == (1, 32 * 4), name
    # GSPO's paper: its clip on the sequence's ratio, 4 minibatches; CISPO: no lower bound
    gspo, cispo = (load_config([f"--ALGORITHM={a}", "--GROUP_SIZE=4"])
                   for a in ("gspo", "cispo"))
    assert (gspo.KL_COEF, gspo.CLIP_RANGE_LOW, gspo.CLIP_RANGE_HIGH, gspo.LOSS_AGG, gspo.PPO_EPOCHS,
            gspo.MINI_BATCH_SIZE) == (0.0, 3e-4, 4e-4, "seq-mean-token-mean", 1, 32)
    assert (cispo.KL_COEF, cispo.CLIP_RANGE_LOW, cispo.CLIP_RANGE_HIGH, cispo.LOSS_AGG,
            cispo.MINI_BATCH_SIZE) == (0.0, 1.0, 0.28, "token-mean", 32)
    with pytest.raises(Refusal,
                       match=r"\(for gspo, MINI_BATCH_SIZE=None is a quarter \(3\) of the"):
        check_settings(load_config(["--ALGORITHM=gspo", "--GROUP_SIZE=3",
                                                  "--BATCH_SIZE=4"]))
    grpo_args = ["--ALGORITHM=grpo", "--GROUP_SIZE=4", "--PPO_EPOCHS=2"]
    assert load_config(grpo_args).PPO_EPOCHS == 2
    with pytest.raises(Refusal,
                       match=r"MINI_BATCH_SIZE \(15\) must be divisible by MICRO_BATCH_SIZE \(8\) "
                             r"\(for grpo, MINI_BATCH_SIZE=None is the whole batch"):
        check_settings(load_config(["--ALGORITHM=grpo", "--GROUP_SIZE=3",
                                                  "--BATCH_SIZE=5"]))
    mine = load_config(["--ALGORITHM=dapo", "--KL_COEF=0.01", "--DYNAMIC_SAMPLING=False"])
    assert mine.KL_COEF == 0.01 and mine.DYNAMIC_SAMPLING is False
    with pytest.raises(Refusal, match="GROUP_SIZE must be at least 2"):
        check_settings(load_config(["--ALGORITHM=grpo"]))
    # REINFORCE's loss has no ratio to clip: more than one update per batch is refused, not ignored
    for extra in ("--PPO_EPOCHS=2", "--MINI_BATCH_SIZE=8"):
        with pytest.raises(Refusal, match=r"ALGORITHM='reinforce' takes one update on fresh "
                                          r"samples .* leave both None"):
            check_settings(load_config(["--ALGORITHM=reinforce", extra]))
    with pytest.raises(Refusal, match="ALGORITHM must be one of"):
        load_config(["--ALGORITHM=trpo"])
    with pytest.raises(Refusal,
                       match=r"BATCH_SIZE \* GROUP_SIZE \(32 \* 3 sequences\)"):
        check_settings(load_config(["--GROUP_SIZE=3", "--MINI_BATCH_SIZE=64",
                                                  "--MICRO_BATCH_SIZE=8"]))


def test_prompt_stream_is_the_same_however_it_is_read():
    whole = ppo.stream_indices(0, 25, 10, seed=3)
    parts = ppo.stream_indices(
        0, 7, 10, 3) + ppo.stream_indices(7, 11, 10, 3) + ppo.stream_indices(18, 7, 10, 3)
    assert whole == parts
    assert sorted(whole[:10]) == list(range(10)) and sorted(whole[10:20]) == list(range(10))
    assert whole[:10] != whole[10:20]  # a fresh order each pass


def test_concat_rollouts_repads_prompts_left_and_responses_right():
    a = {"prompt_ids": torch.tensor([[5, 6]]), "prompt_mask": torch.tensor([[1, 1]]),
         "response_ids": torch.tensor([[7]]), "mask": torch.tensor([[1]]),
         "scores": torch.tensor([1.0]),
         "prompts": ["a"]}
    b = {"prompt_ids": torch.tensor([[8]]), "prompt_mask": torch.tensor([[1]]),
         "response_ids": torch.tensor([[9, 0, 0]]), "mask": torch.tensor([[1, 1, 0]]),
         "scores": torch.tensor([2.0]),
         "prompts": ["b"]}
    joined = ppo.concat_rollouts([a, b], pad_id=0)
    assert (joined["prompt_ids"].tolist()
            == [[5, 6], [0, 8]] and joined["prompt_mask"].tolist() == [[1, 1], [0, 1]])
    assert joined["response_ids"].tolist() == [[7, 0, 0], [9, 0, 0]]
    assert joined["mask"].tolist() == [[1, 0, 0], [1, 1, 0]]
    assert joined["scores"].tolist() == [1.0, 2.0] and joined["prompts"] == ["a", "b"]


def test_dynamic_sampling_drops_uniform_groups_and_refills(tiny, tmp_path):
    # Enough rounds that the batch fills up whatever else ties by chance (the round limit: the next
    # test).
    cfg = load_config(tiny_args(tiny, tmp_path, ALGORITHM="dapo", GROUP_SIZE=2,
                                          BATCH_SIZE=8, MINI_BATCH_SIZE=8,
                                    REWARD_MODEL="reward_fns:uniform_for_movies",
                                    MAX_SAMPLING_ROUNDS=20))
    trainer = ppo.PPOTrainer(cfg)
    batch, counts = trainer.rollout()
    assert len(batch["prompts"]) == 16 and counts["sampling_rounds"] >= 2
    assert not any("movie" in p for p in batch["prompts"])
    # Every movie prompt consumed so far was dropped (plus any other group that happened to tie).
    consumed = ppo.stream_indices(0, trainer.data_position, len(trainer.prompts), cfg.SEED)
    n_movie = sum("movie" in trainer.prompts[i] for i in consumed)
    generated = trainer.data_position  # groups: one per prompt
    assert round(counts["groups_dropped"] * generated) >= n_movie > 0
    assert not ppo.uniform_groups(batch["scores"], 2).any()
    assert trainer.responses_generated == 2 * generated
    metrics, _ = trainer.step()
    assert 0 < metrics["groups_dropped"] < 1 and "clipfrac_high" in metrics


def test_dynamic_sampling_stops_after_its_rounds_and_trains_on_the_last_batch(tiny, tmp_path):
    cfg = load_config(tiny_args(tiny, tmp_path, ALGORITHM="dapo", GROUP_SIZE=2,
                                          BATCH_SIZE=8, MINI_BATCH_SIZE=8,
                                    REWARD_MODEL="reward_fns:constant", MAX_SAMPLING_ROUNDS=2))
    trainer = ppo.PPOTrainer(cfg)
    batch, counts = trainer.rollout()
    # every group of every round was uniform
    assert counts == {"groups_dropped": 1.0, "sampling_rounds": 3}
    # the last round's batch, whole
    assert len(batch["prompts"]) == 16 and trainer.data_position == 24


@pytest.mark.parametrize("algorithm", ["ppo", "grpo", "dr_grpo", "dapo", "reinforce", "gspo",
                                       "cispo"])
def test_every_algorithm_trains_through_the_same_trainer(tiny, tmp_path, algorithm):
    out = tmp_path / algorithm
    # reinforce takes one update per batch, its default; the others 2 epochs of 2 minibatches
    minibatch = dict(PPO_EPOCHS=None, MINI_BATCH_SIZE=None) if algorithm == "reinforce" else \
        dict(MINI_BATCH_SIZE=4)
    args = tiny_args(tiny, out, ALGORITHM=algorithm, GROUP_SIZE=4, BATCH_SIZE=2, **minibatch,
                     MICRO_BATCH_SIZE=2, MAX_STEPS=2, REWARD_MODEL="reward_fns:word_count")
    # (the sentiment reward is 0 for most of the untrained policy's text, so groups were uniform and
    # the weights moved only through AdamW's default weight decay, which this test took for
    # learning)
    cfg = load_config(args)
    trainer = ppo.PPOTrainer(cfg)
    assert (trainer.critic is not None) == (algorithm == "ppo")
    # KL_COEF 0: dapo, gspo and cispo load no reference
    assert (trainer.ref_policy is not None) == (algorithm not in ("dapo", "gspo", "cispo"))
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    for _ in range(2):
        metrics, _ = trainer.step()
    assert all(math.isfinite(v) for v in metrics.values())
    assert max((a - b).abs().max().item() for a, b in zip(before, trainer.policy.parameters())) > 0
    assert "reward_std_in_group" in metrics and "clipfrac_low" in metrics
    assert ("kl_loss" in metrics) == (algorithm in ("grpo", "dr_grpo"))
    assert ppo.main(args) == 0  # and from the command line, writing its outputs
    assert (out / "policy" / "config.json").exists()
    assert (out / "critic").exists() == (algorithm == "ppo")


def test_single_pass_reuses_the_update_forward_with_the_same_result(tiny, tmp_path, monkeypatch):
    """grpo with one pass over one minibatch skips the rollout's policy forward; the update, the kl
    metric and the entropy metric must equal those of the two-forward path."""
    results = []
    for reuse in (True, False):
        cfg = load_config(tiny_args(tiny, tmp_path / str(reuse), ALGORITHM="grpo",
                                              GROUP_SIZE=4, BATCH_SIZE=2,
                                        PPO_EPOCHS=1, MINI_BATCH_SIZE=8, MICRO_BATCH_SIZE=4,
                                        REWARD_MODEL="reward_fns:sentiment"))
        trainer = ppo.PPOTrainer(cfg)
        assert trainer.single_pass
        monkeypatch.setattr(trainer, "single_pass", reuse)
        metrics, _ = trainer.step()
        results.append((metrics, torch.cat([p.detach().flatten()
                                            for p in trainer.policy.parameters()])))
    (m1, w1), (m2, w2) = results
    torch.testing.assert_close(w1, w2, atol=1e-6, rtol=1e-5)
    # the same metrics either way, but the sampler's log-probs against the rollout forward's, which
    # the single pass does not run
    assert set(m1) == set(m2) - {"rollout_logprob_diff", "rollout_logprob_diff_max"}
    for key in ("kl", "entropy", "policy_loss", "kl_loss", "reward"):
        assert m1[key] == pytest.approx(m2[key], rel=1e-4, abs=1e-6), key
