"""Each equation of ppo.py against a slow, obvious reference written with Python loops or NumPy."""
import math

import numpy as np
import pytest
import torch

import ppo


def random_mask(B, T, gen, min_len=1):
    """Valid tokens form a prefix of each row (as in a response): lengths drawn in [min_len, T]."""
    lengths = torch.randint(min_len, T + 1, (B,), generator=gen)
    return (torch.arange(T)[None] < lengths[:, None]).float(), lengths


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_masked_mean_var_whiten_match_numpy_on_valid_entries(gen):
    x = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    mask, _ = random_mask(5, 7, gen)
    valid = x[mask.bool()].numpy()
    assert ppo.masked_mean(x, mask).item() == pytest.approx(valid.mean())
    assert ppo.masked_var(x, mask).item() == pytest.approx(valid.var(ddof=1))
    assert ppo.masked_var(x, mask, unbiased=False).item() == pytest.approx(valid.var())
    w = ppo.masked_whiten(x, mask)
    expected = (valid - valid.mean()) / math.sqrt(valid.var(ddof=1) + 1e-8)
    np.testing.assert_allclose(w[mask.bool()].numpy(), expected, rtol=1e-10)
    assert (w[~mask.bool()] == 0).all()
    # Padding values must not leak into the statistics.
    x2 = x.masked_fill(~mask.bool(), 1e6)
    torch.testing.assert_close(ppo.masked_whiten(x2, mask), w)
    w_unshifted = ppo.masked_whiten(x, mask, shift_mean=False)
    np.testing.assert_allclose(w_unshifted[mask.bool()].numpy(), expected + valid.mean(),
                               rtol=1e-10)


def test_masked_mean_per_row(gen):
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    mask, lengths = random_mask(4, 6, gen)
    expected = [x[i, :lengths[i]].mean().item() for i in range(4)]
    np.testing.assert_allclose(ppo.masked_mean(x, mask, dim=1).numpy(), expected)


def response_mask_reference(ids, eos_ids):
    mask, ended = [], []
    for row in ids.tolist():
        m, done = [], False
        for t in row:
            m.append(0 if done else 1)
            done = done or t in eos_ids
        mask.append(m)
        ended.append(done)
    return torch.tensor(mask), torch.tensor(ended)


def test_response_mask_stops_after_first_eos(gen):
    eos = [3, 7]
    ids = torch.randint(0, 10, (50, 9), generator=gen)
    ids[0] = torch.tensor([3, 1, 1, 1, 1, 1, 1, 1, 1])  # EOS first: one valid token
    ids[1] = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1, 1])  # no EOS: all valid, not ended
    ids[2] = torch.tensor([1, 7, 3, 7, 1, 1, 1, 1, 1])  # several EOS: the first one counts
    mask, ended = ppo.response_mask(ids, torch.tensor(eos))
    ref_mask, ref_ended = response_mask_reference(ids, eos)
    assert torch.equal(mask, ref_mask) and torch.equal(ended, ref_ended)
    assert mask[0].tolist() == [1] + [0] * 8 and not ended[1] and mask[1].sum() == 9
    assert mask[2].tolist() == [1, 1] + [0] * 7


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    expected = []
    for row in mask.tolist():
        pos, p = [], 0
        for m in row:
            pos.append(p if m else 0)
            p += m
        expected.append(pos)
    assert ppo.position_ids_from_mask(mask).tolist() == expected


def test_left_pad():
    ids, mask = ppo.left_pad([[5, 6], [7], [1, 2, 3]], pad_id=0)
    assert ids.tolist() == [[0, 5, 6], [0, 0, 7], [1, 2, 3]]
    assert mask.tolist() == [[0, 1, 1], [0, 0, 1], [1, 1, 1]]


def test_logprobs_and_entropy_match_torch_distributions(gen):
    logits = torch.randn(3, 5, 11, generator=gen) * 3
    tokens = torch.randint(0, 11, (3, 5), generator=gen)
    dist = torch.distributions.Categorical(logits=logits)
    logp, logp_all = ppo.logprobs_from_logits(logits, tokens)
    torch.testing.assert_close(logp, dist.log_prob(tokens))
    torch.testing.assert_close(ppo.entropy_from_logprobs(logp_all), dist.entropy())
    # bf16 logits are promoted to float32 before the softmax.
    assert ppo.logprobs_from_logits(logits.bfloat16(), tokens)[1].dtype == torch.float32


def test_kl_estimators_pointwise_and_unbiased(gen):
    logp = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    ref = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ppo.kl_penalty(logp, ref, "k1"), logp - ref)
    r = torch.exp(ref - logp)
    torch.testing.assert_close(ppo.kl_penalty(logp, ref, "k3"), r - 1 - torch.log(r))
    assert (ppo.kl_penalty(logp, ref, "k3") >= 0).all()
    with pytest.raises(ValueError):
        ppo.kl_penalty(logp, ref, "k2x")
    # Both are unbiased estimators of KL(p || q) under samples from p.
    p_logits, q_logits = torch.tensor([2.0, 0.5, -1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0, -0.5])
    p, q = torch.distributions.Categorical(
        logits=p_logits), torch.distributions.Categorical(logits=q_logits)
    true_kl = torch.distributions.kl_divergence(p, q).item()
    x = torch.multinomial(p.probs, 400_000, replacement=True, generator=gen)
    for est in ("k1", "k3"):
        assert (ppo.kl_penalty(p.log_prob(x), q.log_prob(x), est).mean().item()
                == pytest.approx(true_kl, abs=5e-3))


def test_per_token_rewards_put_score_on_last_valid_token(gen):
    mask, lengths = random_mask(6, 5, gen)
    kl = torch.randn(6, 5, generator=gen)
    scores = torch.randn(6, generator=gen)
    rewards = ppo.per_token_rewards(scores, kl, mask, kl_coef=0.1)
    for i in range(6):
        for t in range(5):
            expected = -0.1 * kl[i, t].item() if t < lengths[i] else 0.0
            if t == lengths[i] - 1:
                expected += scores[i].item()
            assert rewards[i, t].item() == pytest.approx(expected, abs=1e-6)


def gae_reference(rewards, values, lengths, gamma, lam):
    """Textbook GAE, one sequence at a time, over its valid tokens only."""
    adv = torch.zeros_like(rewards)
    for i, n in enumerate(lengths.tolist()):
        for t in range(n):
            total = 0.0
            for k in range(t, n):
                next_v = values[i, k + 1].item() if k + 1 < n else 0.0
                delta = rewards[i, k].item() + gamma * next_v - values[i, k].item()
                total += (gamma * lam) ** (k - t) * delta
            adv[i, t] = total
    return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0), (0.99, 0.0)])
def test_gae_matches_textbook_sum(gen, gamma, lam):
    mask, lengths = random_mask(7, 9, gen)
    rewards = torch.randn(7, 9, generator=gen, dtype=torch.float64)
    # garbage beyond the end must not matter
    values = torch.randn(7, 9, generator=gen, dtype=torch.float64)
    adv, ret = ppo.gae(rewards, values, mask, gamma, lam)
    expected = gae_reference(rewards, values, lengths, gamma, lam)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, (expected + values) * mask)
    if lam == 1.0 and gamma == 1.0:  # lambda=1, gamma=1: advantage = reward-to-go - value
        togo = torch.flip(torch.cumsum(torch.flip(rewards * mask, [1]), 1), [1])
        torch.testing.assert_close(adv, (togo - values) * mask)


def test_policy_loss_matches_branchwise_reference(gen):
    logp = torch.randn(5, 6, generator=gen, dtype=torch.float64) * 0.3
    old = torch.randn(5, 6, generator=gen, dtype=torch.float64) * 0.3
    adv = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    eps = 0.2
    loss, clipped, ratio = ppo.policy_loss(logp, old, adv, eps)
    for i in range(5):
        for t in range(6):
            r, a = math.exp(logp[i, t] - old[i, t]), adv[i, t].item()
            r_clip = min(max(r, 1 - eps), 1 + eps)
            assert ratio[i, t].item() == pytest.approx(r)
            assert loss[i, t].item() == pytest.approx(-min(r * a, r_clip * a))
            # The clipped branch is active when the ratio left the trust region in the direction the
            # advantage pushes it: above 1+eps with a > 0, below 1-eps with a < 0.
            assert clipped[i, t].item() == float((a > 0 and r > 1 + eps) or (a < 0 and r < 1 - eps))


def test_policy_loss_gradient_is_zero_when_clipped():
    # ratios e^0.5 ~ 1.65 and e^-0.5 ~ 0.61
    logp = torch.tensor([0.5, -0.5, 0.5, -0.5], requires_grad=True)
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    loss, _, _ = ppo.policy_loss(logp, torch.zeros(4), adv, 0.2)
    loss.sum().backward()
    assert logp.grad[0] == 0 and logp.grad[1] == 0  # clipped: no push further out
    # moving back towards the region still gets gradient
    assert logp.grad[2] != 0 and logp.grad[3] != 0


def test_value_loss_matches_reference(gen):
    v = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    old = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    ret = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    loss, clipped = ppo.value_loss(v, old, ret, 0.2)
    for i in range(4):
        for t in range(5):
            vc = old[i, t].item() + min(max(v[i, t].item() - old[i, t].item(), -0.2), 0.2)
            a, b = (v[i, t].item() - ret[i, t].item()) ** 2, (vc - ret[i, t].item()) ** 2
            assert loss[i, t].item() == pytest.approx(0.5 * max(a, b))
            assert clipped[i, t].item() == float(b > a)
    plain, none_clipped = ppo.value_loss(v, old, ret, None)
    torch.testing.assert_close(plain, 0.5 * (v - ret) ** 2)
    assert none_clipped.sum() == 0


def test_explained_variance(gen):
    mask, _ = random_mask(3, 4, gen)
    ret = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    val = ret + 0.1 * torch.randn(3, 4, generator=gen, dtype=torch.float64)
    r, v = ret[mask.bool()].numpy(), val[mask.bool()].numpy()
    assert (ppo.explained_variance(val, ret, mask).item()
            == pytest.approx(1 - np.var(r - v, ddof=1) / np.var(r, ddof=1)))
    assert ppo.explained_variance(ret, ret, mask).item() == pytest.approx(1.0)


def test_adaptive_kl_controller_follows_ziegler_update():
    ctl = ppo.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(current_kl=9.0, n_steps=100)  # error clipped to +0.2
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000))
    ctl2 = ppo.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl2.update(current_kl=5.4, n_steps=50)  # error -0.1, inside the clip
    assert ctl2.value == pytest.approx(0.1 * (1 - 0.1 * 50 / 10000))
    fixed = ppo.AdaptiveKLController(0.1, target=None, horizon=10000)
    fixed.update(100.0, 1000)
    assert fixed.value == 0.1


@pytest.mark.parametrize("algorithm", ["ppo", "grpo", "reinforce"])
def test_actor_loss_matches_a_per_token_reference(gen, algorithm):
    """The whole policy loss against a loop over tokens: surrogate, entropy bonus, GRPO's KL term,
    aggregation."""
    B, T, eps_low, eps_high, ent_coef, beta = 3, 5, 0.2, 0.28, 0.01, 0.04
    logp = torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.3
    old = logp + torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.2
    ref = logp + torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.2
    adv = torch.randn(B, T, generator=gen, dtype=torch.float64)
    ent = torch.rand(B, T, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.float64)
    weights = ppo.loss_weights(mask, "seq-mean-token-mean", mask.sum(), B)
    loss, stats = ppo.actor_loss(logp, old, adv, ent, weights, mask, algorithm, eps_low, eps_high,
                                 ent_coef, ref if algorithm == "grpo" else None, beta, "k3")
    expected = 0.0
    for i in range(B):
        n = int(mask[i].sum())
        for t in range(n):
            lp, a = logp[i, t].item(), adv[i, t].item()
            if algorithm == "reinforce":
                term = -a * lp
            else:
                r = math.exp(lp - old[i, t].item())
                term = -min(r * a, min(max(r, 1 - eps_low), 1 + eps_high) * a)
            term -= ent_coef * ent[i, t].item()
            if algorithm == "grpo":
                q = math.exp(ref[i, t].item() - lp)
                term += beta * (q - 1 - math.log(q))
            expected += term / (n * B)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert ("kl_loss" in stats) == (algorithm == "grpo") and stats["ratio"].shape == (B, T)


def sequence_objectives(logp, old, adv, mask, eps_low, eps_high):
    """GSPO's loss by the paper's formula, one sequence at a time in plain Python floats (ratio,
    clip, pessimistic bound, mean over sequences), and its gradient by central differences."""
    def loss_of(lp):  # lp: lists of floats
        total = 0.0
        for i in range(len(lp)):
            n = int(mask[i].sum())
            s = math.exp(sum(lp[i][t] - old[i, t].item() for t in range(n)) / n)
            a = adv[i, 0].item()
            total += -min(s * a, min(max(s, 1 - eps_low), 1 + eps_high) * a)
        return total / len(lp)
    base = logp.tolist()
    grad = torch.zeros_like(logp)
    for i in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            up, down = [r[:] for r in base], [r[:] for r in base]
            up[i][t] += 1e-6
            down[i][t] -= 1e-6
            grad[i, t] = (loss_of(up) - loss_of(down)) / 2e-6
    return loss_of(base), grad


@pytest.mark.parametrize("eps", [(0.2, 0.28), (3e-4, 4e-4)])
def test_gspo_loss_and_gradient_match_the_papers_sequence_objective(gen, eps):
    """gspo_loss aggregated as GSPO's default LOSS_AGG (a mean of each sequence's token mean) equals
    the paper's sequence-level objective, and so does its gradient, clipped sequences (gradient 0)
    included; padding counts in no ratio."""
    B, T = 6, 5
    logp = (torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.3).requires_grad_()
    old = logp.detach() + torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.5
    adv = torch.randn(B, 1, generator=gen, dtype=torch.float64).expand(B, T)
    mask = (torch.arange(T) < torch.tensor([[5], [3], [1], [4], [2], [5]])).double()
    old = torch.where(mask.bool(), old, old + 50.0)  # padding that would overflow a ratio
    weights = ppo.loss_weights(mask, ppo.ALGORITHMS["gspo"].defaults["LOSS_AGG"], mask.sum(), B)
    loss, clipped, ratio = ppo.gspo_loss(logp, old, adv, *eps, mask)
    total = (loss * weights).sum()
    total.backward()
    expected, grad = sequence_objectives(logp, old, adv, mask, *eps)
    assert total.item() == pytest.approx(expected, rel=1e-10)
    torch.testing.assert_close(logp.grad * mask, grad * mask, atol=1e-7, rtol=1e-5)
    assert 0 < clipped.sum() < mask.sum()  # both branches taken in these cases
    s = torch.exp(((logp - old) * mask).sum(1) / mask.sum(1)).detach()
    torch.testing.assert_close(ratio.detach() * mask, s[:, None] * mask)


def test_cispo_loss_and_gradient_against_a_loop(gen):
    """CISPO's loss as a token mean, -sg(clip(r)) A log pi, against a loop; its gradient is the
    clipped weight times A times grad log pi, nonzero for clipped tokens too (where PPO's clip gives
    none)."""
    B, T, lo, hi = 4, 5, 1.0, 0.28
    logp = (torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.3).requires_grad_()
    old = logp.detach() + torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.4
    adv = torch.randn(B, T, generator=gen, dtype=torch.float64)
    mask = (torch.arange(T) < torch.tensor([[5], [2], [4], [1]])).double()
    weights = ppo.loss_weights(mask, "token-mean", mask.sum(), B)
    loss, clipped, _ = ppo.cispo_loss(logp, old, adv, lo, hi, mask)
    (loss * weights).sum().backward()
    expected, n = 0.0, int(mask.sum())
    for i in range(B):
        for t in range(int(mask[i].sum())):
            r = math.exp(logp[i, t].item() - old[i, t].item())
            w = min(max(r, 1 - lo), 1 + hi)
            expected += -w * adv[i, t].item() * logp[i, t].item() / n
            assert logp.grad[i, t].item() == pytest.approx(-w * adv[i, t].item() / n, rel=1e-12)
            assert clipped[i, t].item() == float(r > 1 + hi)
    assert (loss * weights).sum().item() == pytest.approx(expected, rel=1e-12)
    assert clipped.sum() > 0 and (logp.grad.abs() * clipped > 0).sum() == clipped.sum()


@pytest.mark.parametrize("algorithm", ["ppo", "grpo", "dr_grpo", "reinforce"])
def test_advantages_for_each_algorithm_against_loops(gen, algorithm):
    """advantages_for against per-row loops: GAE with gamma = lam = 1 is reward-to-go minus value,
    then whitened; GRPO's is the group z-score; REINFORCE's the KL-penalised score minus the mean of
    the group's others."""
    B, T, G, beta = 4, 4, 2, 0.1
    scores = torch.randn(B, generator=gen, dtype=torch.float64)
    kl = torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.1
    values = torch.randn(B, T, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]],
                        dtype=torch.float64)
    kl = kl * mask
    rewards, raw, adv, returns = ppo.advantages_for(algorithm, scores, kl, values, mask, beta, 1.0,
                                                    1.0, G)
    for i in range(B):
        n = int(mask[i].sum())
        if algorithm == "ppo":
            r = [-beta * kl[i, t].item() + (scores[i].item() if t == n - 1 else 0.0)
                 for t in range(n)]
            for t in range(n):
                assert raw[i, t].item() == pytest.approx(sum(r[t:]) - values[i, t].item())
                assert returns[i, t].item() == pytest.approx(sum(r[t:]))
        elif algorithm == "grpo":
            g = scores.view(-1, G)[i // G].numpy()
            z = (scores[i].item() - g.mean()) / (g.std(ddof=1) + 1e-4)
            assert all(adv[i, t].item() == pytest.approx(z) for t in range(n))
        elif algorithm == "dr_grpo":  # Liu et al. 2025: the group's mean alone, no std
            g = scores.view(-1, G)[i // G].tolist()
            assert all(adv[i, t].item() == pytest.approx(scores[i].item() - sum(g) / len(g))
                       for t in range(n))
        else:
            seq = scores - beta * kl.sum(1)
            other = seq[i + 1 if i % 2 == 0 else i - 1].item()
            assert all(adv[i, t].item() == pytest.approx(seq[i].item() - other) for t in range(n))
        assert (adv[i, n:] == 0).all()
    if algorithm == "ppo":
        valid = raw[mask.bool()]
        torch.testing.assert_close(adv[mask.bool()],
                                   (valid - valid.mean()) / (valid.var() + 1e-8).sqrt())
    else:
        assert returns is None


def test_dr_grpo_loss_is_a_token_sum_over_the_constant_horizon(gen):
    """Dr. GRPO's aggregation (Liu et al. 2025; TRL's loss_type="dr_grpo") against a loop: every
    token's clipped surrogate plus the k3 KL term, summed, divided by B * MAX_NEW_TOKENS whatever
    each response's length; so, unlike GRPO's, a token of a long response weighs what a token of a
    short one does."""
    B, T, eps, beta = 3, 6, 0.2, 0.04
    logp = torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.3
    old = logp + torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.2
    ref = logp + torch.randn(B, T, generator=gen, dtype=torch.float64) * 0.2
    adv = torch.randn(B, T, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]],
                        dtype=torch.float64)
    weights = ppo.loss_weights(mask, ppo.ALGORITHMS["dr_grpo"].defaults["LOSS_AGG"], mask.sum(), B,
                               T)
    loss, _ = ppo.actor_loss(logp, old, adv, torch.zeros_like(adv), weights, mask, "dr_grpo", eps,
                             eps, 0.0, ref, beta, "k3")
    expected = 0.0
    for i in range(B):
        for t in range(int(mask[i].sum())):
            r, a = math.exp(logp[i, t].item() - old[i, t].item()), adv[i, t].item()
            q = math.exp(ref[i, t].item() - logp[i, t].item())
            expected += (
                -min(r * a, min(
                    max(r, 1 - eps), 1 + eps) * a) + beta * (q - 1 - math.log(q))) / (B * T)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_shaped_scores_against_a_loop(gen):
    """The missing-EOS penalty on responses that never ended, and DAPO's overlong shaping by
    length."""
    scores = torch.randn(6, generator=gen, dtype=torch.float64)
    ended = torch.tensor([True, False, True, False, True, True])
    lengths = torch.tensor([3, 10, 8, 10, 9, 5])
    shaped = ppo.shaped_scores(scores, ended, lengths, 0.5, 2.0, 10, 4)
    for i in range(6):
        over = min(max((lengths[i].item() - (10 - 4)) / 4, 0.0), 1.0)
        expected = scores[i].item() - (0.0 if ended[i] else 0.5) - 2.0 * over
        assert shaped[i].item() == pytest.approx(expected)
    # both off
    assert torch.equal(ppo.shaped_scores(scores, ended, lengths, None, 1.0, 10, 0), scores)


def test_step_statistics_in_the_order_logged(gen):
    """The metrics of one step from its tensors: means over valid tokens, the k1 kl given, the
    penalty and the score apart only with per-token rewards, the critic's three only with values, in
    metrics.jsonl's order."""
    B, T, G = 4, 3, 2
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=torch.float64)
    scores = torch.randn(B, generator=gen, dtype=torch.float64)
    raw = torch.randn(B, T, generator=gen, dtype=torch.float64)
    kl = torch.rand(B, T, generator=gen, dtype=torch.float64) * mask
    rewards = torch.randn(B, T, generator=gen, dtype=torch.float64)
    values, returns = torch.randn(B, T, generator=gen, dtype=torch.float64), raw.clone()
    given = dict(step=0, scores=scores, mask=mask, ended=torch.tensor([True, False, True, True]),
                 lengths=mask.sum(1), raw_advantages=raw, entropy=0.7,
                 update_stats={"policy_loss": 0.1}, seq_kl=torch.tensor(2.5), kl_coef=0.05,
                 rewards=rewards)
    with_critic = ppo.step_statistics(**given, kl=kl, values=values, returns=returns, group_size=G,
                                      counters={"lr": 1e-3}, parts={}, sampling={})
    assert list(with_critic) == ["step", "reward", "reward_std", "advantage", "entropy",
                                 "policy_loss",
                                 "response_length", "eos_fraction", "lr", "kl", "kl_coef",
                                 "non_score_reward",
                                 "rlhf_reward", "value", "return", "explained_variance",
                                 "reward_std_in_group"]
    valid = [raw[i, t].item() for i in range(B) for t in range(T) if mask[i, t]]
    assert with_critic["advantage"].item() == pytest.approx(sum(valid) / mask.sum().item())
    assert with_critic["non_score_reward"].item() == pytest.approx(-0.05 * kl.sum().item() / B)
    assert with_critic["eos_fraction"].item() == 0.75
    assert with_critic["response_length"].item() == 2.25
    groups = scores.view(-1, G)
    assert with_critic["reward_std_in_group"].item() == pytest.approx(groups.std(1).mean().item())
    plain = ppo.step_statistics(**given, kl=None, values=None, returns=None, group_size=1,
                                counters={}, parts={"a": scores}, sampling={"sampling_rounds": 2})
    assert "non_score_reward" not in plain
    assert "value" not in plain
    assert "reward_std_in_group" not in plain
    assert plain["reward_a"].item() == pytest.approx(scores.mean().item())
    assert plain["sampling_rounds"] == 2
