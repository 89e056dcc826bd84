"""The sampler and the batched forward agree: the log-probs used for training describe the
distribution the tokens were actually drawn from, with left-padded prompts of different lengths and
EOS inside the response."""
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import ppo
from machinery import sampling


@pytest.fixture(scope="module")
def model_and_tok(tiny):
    return AutoModelForCausalLM.from_pretrained(
        tiny["policy"]).eval(), AutoTokenizer.from_pretrained(tiny["policy"])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_logprobs_equal_batched_forward(model_and_tok, temperature):
    model, tok = model_and_tok
    torch.manual_seed(0)
    prompts = [tok(p)["input_ids"] for p in ["the movie was", "i think the food was", "my day"]]
    ids, mask = ppo.left_pad(prompts, tok.pad_token_id)
    eos = torch.tensor([tok.eos_token_id])
    response, sample_logp = ppo.sample(model, ids, mask, 12, temperature, eos, tok.pad_token_id)
    rmask, _ = ppo.response_mask(response, eos)
    full_ids, full_mask = torch.cat([ids, response], 1), torch.cat([mask, rmask], 1)
    logp, entropy = ppo.response_logprobs(model, full_ids, full_mask, ids.shape[1], temperature)
    valid = rmask.bool()
    torch.testing.assert_close(logp[valid], sample_logp[valid], atol=1e-4, rtol=1e-4)
    assert (entropy[valid] > 0).all()
    # A prompt alone (no padding) gives the same log-probs as inside the left-padded batch.
    n = int(rmask[1].sum())
    alone_ids = torch.cat([torch.tensor([prompts[1]]), response[1:2, :n]], 1)
    alone_logp, _ = ppo.response_logprobs(model, alone_ids, torch.ones_like(alone_ids),
                                          len(prompts[1]), temperature)
    torch.testing.assert_close(alone_logp[0], logp[1, :n], atol=1e-4, rtol=1e-4)


def test_sampling_stops_at_eos_and_pads_after(model_and_tok):
    model, tok = model_and_tok
    torch.manual_seed(1)
    ids, mask = ppo.left_pad([tok("the food")["input_ids"]] * 64, tok.pad_token_id)
    # Make one frequent token the EOS so that many rows end early.
    with torch.no_grad():
        logits = model(input_ids=ids[:1]).logits[0, -1]
    eos_id = int(logits.argmax())
    pad_id = (eos_id + 1) % len(logits)  # a pad id distinct from the EOS id
    response, _ = ppo.sample(model, ids, mask, 10, 1.0, torch.tensor([eos_id]), pad_id=pad_id)
    rmask, ended = ppo.response_mask(response, torch.tensor([eos_id]))
    assert ended.any()
    assert (response[rmask == 0] == pad_id).all()  # everything after the first EOS is padding
    assert response.shape[1] <= 10


def test_sampling_follows_the_temperature_scaled_distribution(model_and_tok):
    """Empirical first-token frequencies match softmax(logits / T): no hidden top-k/top-p."""
    model, tok = model_and_tok
    torch.manual_seed(2)
    ids, mask = ppo.left_pad([tok("the")["input_ids"]] * 4000, tok.pad_token_id)
    response, _ = ppo.sample(model, ids, mask, 1, 1.5, torch.tensor([tok.eos_token_id]),
                             tok.pad_token_id)
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids[:1]).logits[0, -1] / 1.5, -1)
    freq = torch.bincount(response[:, 0], minlength=len(probs)).float() / 4000
    assert (freq - probs).abs().max() < 0.03
    assert (freq > 0).sum() > 50  # the tail is sampled too: no top-k truncation


def test_the_kv_cache_keyword_is_the_installed_transformers_one():
    """sampling.CACHE names the forward's cache argument of the installed transformers (5.24
    renamed `past_key_values` to `cache`; an unknown keyword would fall into **kwargs unread)."""
    import inspect

    from transformers import LlamaForCausalLM, Qwen3ForCausalLM
    for model_class in (LlamaForCausalLM, Qwen3ForCausalLM):
        assert sampling.CACHE in inspect.signature(model_class.forward).parameters
