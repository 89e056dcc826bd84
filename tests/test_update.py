"""What the update must get exactly right, each a defect an audit once found, with a test that fails
where it is present: dropout off, zero advantages, weight decay, masked positions, baselines, long
prompts, and a KL of exactly 0 at step 0."""
import pytest
import torch

from tasks import sentiment
import ppo
from machinery import rewards
from conftest import load_config, tiny_args


# ---- 1. dropout: every nn.Dropout off, whatever the config calls it ------------------------------
def make_gpt2(path, sequence_classifier=False):
    """A tiny GPT-2 with its dropout (resid_pdrop, embd_pdrop, attn_pdrop: no key says 'dropout') at
    0.3."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel
    torch.manual_seed(0)
    tok = sentiment.build_tokenizer(sentiment.make_corpus(n=500, seed=0), vocab_size=300)
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                        resid_pdrop=0.3, embd_pdrop=0.3, attn_pdrop=0.3, summary_first_dropout=0.3,
                        eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id, num_labels=1)
    (GPT2ForSequenceClassification if sequence_classifier else GPT2LMHeadModel)(
        config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_a_gpt2_in_training_mode_has_ratio_exactly_1_on_its_first_minibatch(
        tiny, tmp_path, monkeypatch):
    gpt2 = make_gpt2(tmp_path / "gpt2")
    cfg = load_config(tiny_args(tiny, tmp_path / "run", ACTOR_MODEL=gpt2,
                                          CRITIC_MODEL=gpt2,
                                    REWARD_MODEL="reward_fns:word_count",
                                    GRADIENT_CHECKPOINTING=True))
    trainer = ppo.PPOTrainer(cfg, log=lambda *a: None)
    # gradient checkpointing needs training mode: dropout must still be off
    assert trainer.policy.training
    assert all(m.p == 0 for model in (trainer.policy, trainer.critic, trainer.ref_policy)
               for m in model.modules() if isinstance(m, torch.nn.Dropout))
    ratios, real = [], ppo.probability_ratio
    monkeypatch.setattr(ppo, "probability_ratio", lambda *a,
                        **k: ratios.append(real(*a, **k)) or ratios[-1])
    trainer.step()
    # the update's first forward equals the rollout's
    assert torch.equal(ratios[0], torch.ones_like(ratios[0]))


# ---- 2. weight decay: 0 by default, so a zero gradient leaves the weights as they were -----------
def test_zero_advantages_leave_the_weights_bit_identical(tiny, tmp_path):
    """GRPO with the same reward for every response: every advantage is 0, and at the reference the
    k3 KL has zero gradient too, so nothing should move. torch's AdamW default (weight_decay=0.01)
    moved every weight."""
    cfg = load_config(tiny_args(tiny, tmp_path / "run", ALGORITHM="grpo", GROUP_SIZE=2,
                                          BATCH_SIZE=4,
                                    REWARD_MODEL="reward_fns:constant"))
    trainer = ppo.PPOTrainer(cfg, log=lambda *a: None)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    trainer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))


def test_weight_decay_spares_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = ppo.make_optimizer(model, lr=0.1, weight_decay=0.5)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight)}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    moved = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    # linear weight decayed; its bias and the norm's weight, bias not
    assert moved == [True, False, False, False]


# ---- 5. masked log-ratios never overflow into NaN ------------------------------------------------
def test_a_masked_position_far_from_the_old_policy_gives_no_nan():
    logp = torch.tensor([[-1.0, -2.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.1, -1.9, -100.0]])  # the padding: exp(0 - (-100)) overflows float32
    adv, mask = torch.tensor([[1.0, -1.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    loss, _, ratio = ppo.policy_loss(logp, old, adv, 0.2, mask=mask)
    total = (loss * ppo.loss_weights(mask, "token-mean", mask.sum(), 1)).sum()
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(logp.grad).all() and logp.grad[0, 2] == 0
    # brute force: valid ones
    valid, _, _ = ppo.policy_loss(logp[:, :2].detach(), old[:, :2], adv[:, :2], 0.2)
    assert total.item() == pytest.approx(valid.mean().item())
    assert torch.isfinite(ppo.kl_penalty(torch.tensor([0.0]), torch.tensor([100.0]), "k3")).all()


# ---- 6. REINFORCE with GROUP_SIZE=1: leave-one-out over the batch --------------------------------
def test_reinforce_with_one_response_per_prompt_uses_the_rest_of_the_batch_as_baseline():
    scores = torch.randn(7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    adv = ppo.baseline_advantages(scores, 1)
    for i in range(7):
        others = [scores[j].item() for j in range(7) if j != i]
        assert adv[i].item() == pytest.approx(scores[i].item() - sum(others) / 6)


# ---- 4. the reward model keeps the response whole and reads no more than it can ------------------
def test_a_long_prompt_loses_its_start_not_the_response(tiny):
    """The tiny DeBERTa has 128 positions; a 1024-token limit let longer text through (an index
    error in its position embeddings), and right-side truncation cut the response, the part being
    scored."""
    rm = rewards.RewardModel(tiny["reward"], torch.device("cpu"), torch.float32)
    assert rm.max_length == 128
    prompt, response = "the movie was long and " * 40, " great and i loved it."
    scores = rm([prompt, "the food"], [response, " awful."])
    assert rm.truncated == 1 and torch.isfinite(scores).all()
    fitted = rm.fit(prompt, response, len(rm.encode([prompt], [response])["input_ids"][0]))
    # its end, not ""
    assert prompt.rstrip().endswith(fitted.strip()) and len(fitted) > len(prompt) / 2
    ids = rm.encode([fitted], [response])["input_ids"][0]
    tail = rm.tokenizer(response, add_special_tokens=False)["input_ids"]
    # the whole response, before the final [SEP]
    assert len(ids) <= 128 and ids[-1 - len(tail):-1] == tail
    assert (scores[0].item()
            == pytest.approx(rm([fitted, "the food"], [response, " awful."])[0].item(), abs=1e-6))
    # a response longer than the limit alone is cut, not an error
    rm(["the movie"], [" great" * 300])
    assert rm.truncated == 1


# ---- 3. the reference computes exactly as the policy: at step 0 the KL is 0 in every DTYPE -------
@pytest.mark.parametrize("dtype,lora", [("float32", 0), ("bfloat16", 0), ("bfloat16", 4)])
def test_step_0_kl_is_exactly_0(tiny, tmp_path, dtype, lora):
    """Before: a bf16 copy of the reference under CPU autocast gave -3.7e-4 nats per sequence at
    step 0. With LoRA the reference is the base under the adapters, which start at 0."""
    cfg = load_config(tiny_args(tiny, tmp_path / "run", DTYPE=dtype, LORA_RANK=lora,
                                    REWARD_MODEL="reward_fns:word_count"))
    metrics, _ = ppo.PPOTrainer(cfg, log=lambda *a: None).step()
    assert metrics["kl"] == 0.0 and metrics["non_score_reward"] == 0.0
