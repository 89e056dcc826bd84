"""How the update splits its work: micro-batches packed by a token budget (MICRO_BATCH_TOKENS) and
log-probs computed a chunk of positions at a time. Neither may change a gradient: the loss of a
micro-batch is weighted by its minibatch's totals (ppo.loss_weights), whatever the packing, the bug
that TRL, OpenRLHF and ms-swift each shipped once (a micro-batch normalised by its own token count).
"""
import functools
import pytest
import torch

import ppo
from machinery.distributed import micro_batch_count, micro_batches
from conftest import load_config, tiny_args


@pytest.mark.parametrize("budget", [None, 1, 20, 27, 40, 1000])
def test_micro_batches_cover_each_row_once_within_the_budget(budget):
    g = torch.Generator().manual_seed(0)
    rows = torch.randperm(50, generator=g)[:16]
    lengths = torch.randint(1, 12, (16,), generator=g)
    Tp = 5
    micros = micro_batches(rows, lengths, Tp, 4, budget)
    assert sorted(torch.cat(micros).tolist()) == sorted(rows.tolist())
    if budget is None:
        assert [m.tolist() for m in micros] == [m.tolist() for m in rows.split(4)]
        return
    length_of = dict(zip(rows.tolist(), lengths.tolist()))
    for m in micros:
        widest = max(length_of[r] for r in m.tolist())
        assert len(m) == 1 or len(m) * (Tp + widest) <= budget
    # longest first: each micro-batch's rows are no longer than the previous one's shortest
    spans = [[length_of[r] for r in m.tolist()] for m in micros]
    assert all(min(a) >= max(b) for a, b in zip(spans, spans[1:]))
    # greedy: no micro-batch could have taken the next one's first row
    for a, b in zip(spans, spans[1:]):
        assert (len(a) + 1) * (Tp + a[0]) > budget


def test_micro_batch_count_is_the_most_any_rank_runs():
    lengths = torch.tensor([9, 1, 1, 1, 1, 1, 1, 1])  # rank 0 holds rows 0-3, rank 1 rows 4-7
    mb = torch.arange(8)
    # prompts of 2 tokens. Budget 22: rank 0 packs [9, 1] (2 rows of 11) and [1, 1], rank 1 its 4
    # rows in one; 12: rank 0 [9] and [1, 1, 1]; 3: rank 0 one row each (4), rank 1 one row each
    assert micro_batch_count(mb, 8, 2, 4, lengths, 2, 22) == 2
    assert micro_batch_count(mb, 8, 2, 4, lengths, 2, 12) == 2
    assert micro_batch_count(mb, 8, 2, 4, lengths, 2, 3) == 4
    assert micro_batch_count(mb, 8, 2, 4) == 1


@pytest.fixture(scope="module")
def captured(tiny, tmp_path_factory):
    """A PPO trainer after one step, and the rollout its update trained on, its rows given mixed
    lengths 1 .. Tr (the ratio to the old log-probs is no longer 1: the test covers the clipped
    branch too)."""
    cfg = load_config(tiny_args(tiny, tmp_path_factory.mktemp("packing"),
                                          MINI_BATCH_SIZE=8, MICRO_BATCH_SIZE=8, PPO_EPOCHS=1,
                                          ENTROPY_COEF=0.01))
    trainer = ppo.PPOTrainer(cfg)
    seen, original = {}, trainer.update

    def capture(rollout, Tp, lengths):
        seen.update(rollout=dict(rollout), Tp=Tp)
        return original(rollout, Tp, lengths)

    trainer.update = capture
    trainer.step()
    rollout, Tp = seen["rollout"], seen["Tp"]
    Tr = rollout["mask"].shape[1]
    lengths = torch.tensor([8, 1, 5, 3, 8, 2, 7, 4]).clamp(max=Tr)
    rollout["mask"] = (torch.arange(Tr)[None] < lengths[:, None]).float()
    rollout["attention_mask"] = rollout["attention_mask"].clone()
    rollout["attention_mask"][:, Tp:] = rollout["mask"].long()
    rollout["lengths"] = lengths
    return trainer, rollout, Tp


def gradient(model, accumulate, rollout, Tp, micros):
    model.zero_grad(set_to_none=True)
    n_tokens = rollout["lengths"].sum().float()
    for micro in micros:
        accumulate(rollout, micro, Tp, n_tokens)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("loss_agg", list(ppo.LOSS_AGGREGATIONS))
def test_any_micro_batching_gives_the_whole_minibatchs_gradient(captured, loss_agg, monkeypatch):
    trainer, rollout, Tp = captured
    monkeypatch.setattr(trainer.cfg, "LOSS_AGG", loss_agg)
    rows, lengths = torch.arange(8), rollout["lengths"]
    packings = {"whole": [rows], "one row each": list(rows.split(1)),
                "uneven rows": list(rows.split(3))}
    for budget in (2 * (Tp + 8), 3 * (Tp + 4), 5 * (Tp + 8)):
        packings[f"{budget} tokens"] = micro_batches(rows, lengths, Tp, 8, budget)
    # every packing splits the rows differently
    partitions = {frozenset(frozenset(m.tolist()) for m in p) for p in packings.values()}
    assert len(partitions) == len(packings)
    n_seqs = len(rollout["lengths"])
    policy_gradients = functools.partial(trainer.policy_gradients, n_seqs=n_seqs)
    for model, accumulate in ((trainer.policy, policy_gradients),
                              (trainer.critic, trainer.critic_gradients)):
        expected = gradient(model, accumulate, rollout, Tp, packings["whole"])
        assert expected.abs().max() > 0
        for name, micros in packings.items():
            torch.testing.assert_close(gradient(model, accumulate, rollout, Tp, micros),
                                       expected, rtol=1e-4, atol=1e-7, msg=name)


def logprob_case(tiny, lora=False):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny["policy"])
    if lora:
        from peft import LoraConfig, get_peft_model
        # the output layer itself adapted: the chunks run the wrapped layer
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "lm_head"],
                                                 init_lora_weights=False))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 200, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    return model, ids, mask, torch.randn(3, 8, generator=g)


@pytest.mark.parametrize("entropy", ["grad", "value", None])
@pytest.mark.parametrize("temperature,lora", [(1.0, False), (0.7, False), (0.7, True)])
def test_chunked_logprobs_equal_the_whole_computation_with_their_gradients(tiny, entropy,
                                                                           temperature, lora,
                                                                           monkeypatch):
    """LOGPROB_CHUNK: the output layer a few positions at a time (chunks that split rows; with
    LoRA on the output layer, the wrapped layer), the same log-probs, entropies and gradients as
    the whole (B, Tr, V) computation, to float rounding."""
    model, ids, mask, weight = logprob_case(tiny, lora)
    chunked, calls = ppo.chunked_logprobs, []
    monkeypatch.setattr(ppo, "chunked_logprobs", lambda *a: calls.append(a[4]) or chunked(*a))
    results = []
    for chunk in (None, 5, 7, 24):  # 24 = B * Tr: one chunk, the whole path
        model.zero_grad(set_to_none=True)
        logp, ent = ppo.response_logprobs(model, ids, mask, 4, temperature, entropy=entropy,
                                          chunk=chunk)
        loss = (logp * weight).sum() + (0 if ent is None or entropy != "grad" else ent.sum())
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((logp.detach(), None if ent is None else ent.detach(), grads))
        assert (ent is None) == (entropy is None)
        if ent is not None:
            assert ent.requires_grad == (entropy == "grad")
    assert calls == [5, 7]  # the chunked path ran, and not for a single chunk
    whole = results[0]
    assert whole[2] and all(g.abs().max() > 0 for g in whole[2][-1:])
    for logp, ent, grads in results[1:]:
        torch.testing.assert_close(logp, whole[0], rtol=1e-5, atol=1e-6)
        if ent is not None:
            torch.testing.assert_close(ent, whole[1], rtol=1e-5, atol=1e-6)
        assert len(grads) == len(whole[2])
        for a, b in zip(grads, whole[2]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_logits_that_are_not_the_output_layer_alone_are_computed_whole(tiny):
    """A soft cap (Gemma), a scale (Cohere), a divisor (Granite): the chunks would skip it, so such
    models keep the whole computation."""
    from machinery.models import output_layer_of
    model, *_ = logprob_case(tiny)
    assert output_layer_of(model)[1] == "lm_head"
    model.config.final_logit_softcapping = 30.0
    assert output_layer_of(model) is None
    model.config.final_logit_softcapping = None
    model.config.logits_scaling = 8.0
    assert output_layer_of(model) is None
