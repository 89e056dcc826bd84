"""The speed and memory options: the threaded critic update, no gradient clipping, gradient
checkpointing, LoRA with the reference as the adapter-free base, the Qwen3 reward model builder, and
entropy as a statistic. Each must leave the arithmetic as it is; nothing here is timed:
bench/speed.py measures."""
import os
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tasks import sentiment
import ppo
from machinery.script import Refusal
from machinery import models
from machinery import rewards
from machinery import settings
from conftest import check_settings, load_config, tiny_args


class OneAfterTheOther:
    """Stands in for the critic's thread: runs each job at once, in the calling thread."""

    def submit(self, fn, *args):
        future = Future()
        future.set_result(fn(*args))
        return future


def trained_weights(trainer):
    models = [trainer.policy] + ([trainer.critic] if trainer.critic is not None else [])
    return [p.detach().clone() for m in models for p in m.parameters()]


def run_steps(tiny, tmp_path, name, steps=2, patch=None, **overrides):
    trainer = ppo.PPOTrainer(load_config(tiny_args(tiny, tmp_path / name, **overrides)),
                             log=lambda *a: None)
    if patch:
        patch(trainer)
    metrics = [trainer.step()[0] for _ in range(steps)]
    return trainer, metrics


def test_the_critic_thread_gives_exactly_the_sequential_update(tiny, tmp_path):
    threaded, m1 = run_steps(tiny, tmp_path, "threaded")
    sequential, m2 = run_steps(tiny, tmp_path, "sequential",
                               patch=lambda t: setattr(t, "critic_thread", OneAfterTheOther()))
    assert isinstance(threaded.critic_thread, ThreadPoolExecutor)
    for a, b in zip(trained_weights(threaded), trained_weights(sequential), strict=True):
        assert torch.equal(a, b)
    for key in ("policy_loss", "value_loss", "grad_norm", "critic_grad_norm", "approx_kl"):
        assert m1[-1][key] == m2[-1][key], key


def test_max_grad_norm_none_applies_no_clipping(tiny, tmp_path):
    # A learning rate large enough that the clip at 1e-3 would bind on every step.
    unclipped, m1 = run_steps(tiny, tmp_path, "none", MAX_GRAD_NORM=None, LEARNING_RATE=1e-2)
    huge, _ = run_steps(tiny, tmp_path, "huge", MAX_GRAD_NORM=1e30, LEARNING_RATE=1e-2)
    clipped, _ = run_steps(tiny, tmp_path, "clipped", MAX_GRAD_NORM=1e-3, LEARNING_RATE=1e-2)
    assert m1[-1]["grad_norm"] > 1e-3  # the norm is still measured and logged
    for a, b in zip(trained_weights(unclipped), trained_weights(huge), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a,
               b in zip(trained_weights(unclipped), trained_weights(clipped)))


def test_each_model_is_clipped_by_its_own_setting(tiny, tmp_path):
    # One step: the rollout is the same in every run, so a model's weights change only through its
    # own update.
    def weights(trainer):
        return [p.detach().clone() for p in trainer.policy.parameters()], \
            [p.detach().clone() for p in trainer.critic.parameters()]
    settings = dict(MAX_GRAD_NORM=None, CRITIC_MAX_GRAD_NORM=None, LEARNING_RATE=1e-2,
                    CRITIC_LEARNING_RATE=1e-2)
    free, _ = run_steps(tiny, tmp_path, "free", steps=1, **settings)
    for name, overrides, policy_same, critic_same in (("policy", dict(MAX_GRAD_NORM=1e-4), False,
                                                       True),
                                                      ("critic", dict(CRITIC_MAX_GRAD_NORM=1e-4),
                                                       True, False)):
        clipped, _ = run_steps(tiny, tmp_path, name, steps=1, **{**settings, **overrides})
        for same, a, b in zip((policy_same, critic_same), weights(free), weights(clipped)):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)) == same, name


def test_adam_epsilon_reaches_both_optimizers(tiny, tmp_path):
    trainer = ppo.PPOTrainer(load_config(tiny_args(tiny, tmp_path, ADAM_EPSILON=1e-8)),
                             log=lambda *a: None)
    assert [g["eps"] for opt in trainer.optimizers for g in opt.param_groups] == [1e-8] * sum(
        len(opt.param_groups) for opt in trainer.optimizers)


def test_gradient_checkpointing_gives_the_same_update(tiny, tmp_path):
    plain, m1 = run_steps(tiny, tmp_path, "plain")
    checkpointed, m2 = run_steps(tiny, tmp_path, "ckpt", GRADIENT_CHECKPOINTING=True)
    assert checkpointed.policy.is_activation_checkpointing
    assert checkpointed.critic.model.is_activation_checkpointing
    for a, b in zip(trained_weights(plain), trained_weights(checkpointed), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert m1[-1]["policy_loss"] == pytest.approx(m2[-1]["policy_loss"], abs=1e-5)


def response_logp(model, tokens):
    ids, mask = tokens
    return ppo.response_logprobs(model, ids, mask, 3, 1.0)[0]


def test_lora_trains_adapters_only_and_its_reference_is_the_base_model(tiny, tmp_path):
    trainer, metrics = run_steps(tiny, tmp_path, "lora", steps=2, LORA_RANK=4)
    base = AutoModelForCausalLM.from_pretrained(tiny["policy"]).eval()
    assert trainer.ref_policy is None  # no second copy of the weights
    tokens = (torch.tensor([[5, 6, 7, 8, 9, 10]]), torch.ones(1, 6, dtype=torch.long))
    with torch.no_grad():
        with trainer.policy.disable_adapter():
            torch.testing.assert_close(response_logp(trainer.policy, tokens),
                                       response_logp(base, tokens))
        # The adapters moved the policy away from the base: KL was measured against the base.
        assert ((response_logp(trainer.policy, tokens) - response_logp(base, tokens)).abs().max()
                > 1e-4)
    assert metrics[-1]["kl"] != 0.0
    trained = {n for n, p in trainer.policy.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    base_state = base.state_dict()
    for name, p in trainer.policy.get_base_model().named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, base_state[name.replace(".base_layer", "")]), name
    critic_trained = {n for n, p in trainer.critic.model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in critic_trained) and any("score" in n for n in critic_trained)


def test_a_lora_run_saves_merged_folders_and_resumes_exactly(tiny, tmp_path):
    out = tmp_path / "run"
    assert ppo.main(tiny_args(tiny, out, LORA_RANK=4, MAX_STEPS=2)) == 0
    merged = AutoModelForCausalLM.from_pretrained(out / "policy")  # a plain causal LM folder
    AutoModelForSequenceClassification.from_pretrained(out / "critic")
    assert not any("lora" in k for k in merged.state_dict())
    # checkpoints keep adapters
    assert os.path.exists(out / "checkpoint" / "policy" / "adapter_config.json")

    # Resuming loads the adapters, the heads and the optimisers' moments exactly as an uninterrupted
    # run has them.
    resumed = ppo.PPOTrainer(
        load_config(tiny_args(tiny, out, LORA_RANK=4, MAX_STEPS=2, RESUME=True)),
        log=lambda *a: None)
    straight, _ = run_steps(tiny, tmp_path, "straight", steps=2, LORA_RANK=4, MAX_STEPS=2)
    for a, b in zip(trained_weights(resumed), trained_weights(straight), strict=True):
        assert torch.equal(a, b)
    for opt_a, opt_b in zip(resumed.optimizers, straight.optimizers, strict=True):
        moments_a, moments_b = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
        assert moments_a.keys() == moments_b.keys() and moments_a
        for k in moments_a:
            assert torch.equal(moments_a[k]["exp_avg_sq"], moments_b[k]["exp_avg_sq"])
    tokens = (torch.tensor([[5, 6, 7, 8, 9, 10]]), torch.ones(1, 6, dtype=torch.long))
    with torch.no_grad():  # the merged folder computes what the adapters did at the end of the run
        run_end = ppo.PPOTrainer(
            load_config(tiny_args(tiny, tmp_path / "end", LORA_RANK=4, MAX_STEPS=2)),
            log=lambda *a: None)
        models.load_trained_weights(run_end.policy, str(out / "checkpoint" / "policy"))
        torch.testing.assert_close(response_logp(merged.eval(), tokens),
                                   response_logp(run_end.policy, tokens), rtol=0, atol=1e-5)


def test_lora_without_peft_is_refused_before_loading(tiny, tmp_path, monkeypatch):
    real = settings.importlib.util.find_spec
    monkeypatch.setattr(settings.importlib.util, "find_spec",
                        lambda name: None if name == "peft" else real(name))
    with pytest.raises(Refusal, match="pip install peft"):
        check_settings(load_config(tiny_args(tiny, tmp_path, LORA_RANK=8)))
    with pytest.raises(Refusal, match="LORA_RANK"):
        check_settings(load_config(tiny_args(tiny, tmp_path, LORA_RANK=-1)))


def test_the_qwen3_reward_model_scores_sentiment(tiny, tmp_path):
    path = sentiment.build_reward_model(tiny["policy"], str(tmp_path / "rm"), steps=150,
                                        log=lambda *a: None)
    scorer = rewards.RewardModel(path, torch.device("cpu"), torch.float32)
    pos = [" was great and i loved it.", " was wonderful and everyone smiled.",
           " is lovely and it made me happy."]
    neg = [" was terrible and i hated it.", " was awful and nobody smiled.",
           " is horrible and it made me angry."]
    prompts = ["the movie", "the food", "my day"]
    assert scorer(prompts, pos).min() > scorer(prompts, neg).max()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_entropy_as_a_statistic_leaves_the_policy_gradient_bitwise_unchanged(tiny, temperature):
    """With ENTROPY_COEF = 0 the update computes the entropy without a graph ("value"): the gradient
    must be exactly the one through the differentiable entropy times zero ("grad"), and the entropy
    the same number."""
    model = AutoModelForCausalLM.from_pretrained(tiny["policy"])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    adv = torch.randn(3, 6, generator=g)
    grads, entropies = [], []
    for mode in ("grad", "value"):
        model.zero_grad(set_to_none=True)
        logp, entropy = ppo.response_logprobs(model, ids, mask, 3, temperature, entropy=mode)
        assert entropy.requires_grad == (mode == "grad")
        loss, _ = ppo.actor_loss(logp, logp.detach() - 0.1, adv, entropy,
                                 torch.full_like(adv, 1 / 18),
                                 torch.ones_like(adv), "ppo", 0.2, 0.2, entropy_coef=0.0)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        entropies.append(entropy.detach())
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    assert torch.equal(*entropies) and (entropies[0] > 0).all()
    assert ppo.response_logprobs(model, ids, mask, 3, temperature, entropy=None)[1] is None
