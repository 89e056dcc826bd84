"""The sampler's copy of the policy in DTYPE (ROLLOUT_COPY) and the importance weights that correct
for the difference between its log-probs and the trained policy's (ROLLOUT_CORRECTION)."""
import math

import pytest
import torch

import ppo
from conftest import load_config, tiny_args


def brute_force_correction(logp, rollout_logp, mask, mode, cap):
    B, Tr = logp.shape
    out = torch.zeros(B, Tr)
    over = torch.zeros(B, Tr)
    for b in range(B):
        seq = sum(float(logp[b, t] - rollout_logp[b, t]) for t in range(Tr) if mask[b, t])
        for t in range(Tr):
            if not mask[b, t]:
                continue
            w = math.exp(seq if mode.startswith("seq") else float(logp[b, t] - rollout_logp[b, t]))
            over[b, t] = w > cap
            out[b, t] = min(w, cap) if mode.endswith("cap") else (0.0 if w > cap else w)
    return out, over


@pytest.mark.parametrize("mode", ["seq-mask", "seq-cap", "token-mask", "token-cap"])
@pytest.mark.parametrize("cap", [1.0, 3.0])
def test_rollout_correction_against_brute_force(mode, cap):
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(6, 5, generator=g) * 3
    rollout_logp = logp + torch.randn(6, 5, generator=g) * 1.2
    mask = torch.ones(6, 5)
    mask[1, 3:] = mask[4, 1:] = 0
    rollout_logp[1, 3:] = 50.0  # padding: no part in any weight
    rollout_logp[4, 1:] = float("-inf")  # not even an infinite one
    weights, over = ppo.rollout_correction(logp, rollout_logp, mask, mode, cap)
    expected, expected_over = brute_force_correction(logp, rollout_logp, mask, mode, cap)
    torch.testing.assert_close(weights, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(over, expected_over)
    assert 0 < over.sum() < mask.sum()  # the cap acts on some weights, not all
    stats = ppo.rollout_mismatch(logp, rollout_logp, mask)
    diff = [abs(float(logp[b, t] - rollout_logp[b, t])) for b in range(6) for t in range(5)
            if mask[b, t]]
    assert stats["rollout_logprob_diff"].item() == pytest.approx(sum(diff) / len(diff), rel=1e-5)
    assert stats["rollout_logprob_diff_max"].item() == pytest.approx(max(diff), rel=1e-6)


def test_identical_log_probs_weigh_one_and_the_loss_is_unchanged():
    g = torch.Generator().manual_seed(2)
    logp = -torch.rand(3, 4, generator=g)
    mask = torch.ones(3, 4)
    weights, over = ppo.rollout_correction(logp, logp.clone(), mask)
    assert torch.equal(weights, mask) and not over.any()
    adv, w = torch.randn(3, 4, generator=g), torch.full((3, 4), 1 / 12)
    args = (logp, logp.detach() - 0.1, adv, torch.zeros(3, 4), w, mask, "ppo", 0.2, 0.2)
    assert torch.equal(ppo.actor_loss(*args)[0], ppo.actor_loss(*args, is_weight=weights)[0])
    # a weight of 0 removes that sequence's policy-gradient term
    zeroed = weights.clone()
    zeroed[0] = 0
    assert not torch.equal(ppo.actor_loss(*args)[0], ppo.actor_loss(*args, is_weight=zeroed)[0])


def test_a_bfloat16_run_samples_from_a_refreshed_copy_and_corrects_for_it(tiny, tmp_path):
    """DTYPE=bfloat16 on the CPU: the sampler runs a bfloat16 copy of the float32 policy, refreshed
    after each update; the log-prob difference and the share of capped weights are logged; GRPO's
    single pass is off (the weights need the policy's log-probs before the update)."""
    cfg = load_config(tiny_args(tiny, tmp_path / "bf16", DTYPE="bfloat16",
                                          ALGORITHM="grpo", GROUP_SIZE=2, BATCH_SIZE=4,
                                          ROLLOUT_CORRECTION="token-cap",
                                          ROLLOUT_CORRECTION_CAP=1.0))
    trainer = ppo.PPOTrainer(cfg)
    assert trainer.rollout_copy and trainer.rollout_policy is not trainer.policy
    assert not trainer.single_pass
    assert {p.dtype for p in trainer.rollout_policy.parameters()} == {torch.bfloat16}
    copy = trainer.rollout_policy  # tied weights stay tied (the tiny Qwen3 ties its output layer)
    assert copy.lm_head.weight is copy.model.embed_tokens.weight
    assert {p.dtype for p in trainer.policy.parameters()} == {torch.float32}
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    row, _ = trainer.step()
    after = list(trainer.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # it trained
    for copy, p in zip(trainer.rollout_policy.parameters(), after, strict=True):
        assert torch.equal(copy, p.detach().to(torch.bfloat16))  # and the copy followed
    # bfloat16 weights move log-probs by more than rounding (measured: mean 4e-4, max 2e-3 nats)
    assert 1e-4 < row["rollout_logprob_diff"] <= row["rollout_logprob_diff_max"]
    assert 0 < row["rollout_is_capped"] < 1  # a cap of 1: the tokens the copy made less likely


def test_float32_samples_from_the_policy_itself_with_no_correction(tiny, tmp_path):
    cfg = load_config(tiny_args(tiny, tmp_path / "f32", MAX_STEPS=1))
    trainer = ppo.PPOTrainer(cfg)
    assert not trainer.rollout_copy and trainer.rollout_policy is trainer.policy
    row, _ = trainer.step()
    assert "rollout_is_capped" not in row
    # the same model: the KV-cached sampler and the batched forward differ by rounding alone
    assert row["rollout_logprob_diff_max"] < 1e-4


def test_a_rollout_copy_is_refused_where_it_cannot_be_made(capsys):
    assert ppo.main(["--ROLLOUT_COPY=True", "--LORA_RANK=4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ROLLOUT_COPY=True with LoRA" in err
