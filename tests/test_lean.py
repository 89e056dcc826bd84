"""The speed and memory options: the threaded critic update, no gradient clipping,
gradient checkpointing, LoRA with the reference as the adapter-free base, the Qwen3 reward model
builder and the TRL benchmark settings. Nothing here is timed: bench/speed.py measures."""
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from bench import speed as bench
from tasks import sentiment
import ppo
from machinery import models
from machinery import preflight
from conftest import tiny_args


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
    trainer = ppo.PPOTrainer(preflight.load_config(tiny_args(tiny, tmp_path / name, **overrides)),
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
    trainer = ppo.PPOTrainer(preflight.load_config(tiny_args(tiny, tmp_path, ADAM_EPSILON=1e-8)),
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
        preflight.load_config(tiny_args(tiny, out, LORA_RANK=4, MAX_STEPS=2, RESUME=True)),
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
            preflight.load_config(tiny_args(tiny, tmp_path / "end", LORA_RANK=4, MAX_STEPS=2)),
            log=lambda *a: None)
        models.load_trained_weights(run_end.policy, str(out / "checkpoint" / "policy"))
        torch.testing.assert_close(response_logp(merged.eval(), tokens),
                                   response_logp(run_end.policy, tokens), rtol=0, atol=1e-5)


def test_lora_without_peft_is_refused_before_loading(tiny, tmp_path, monkeypatch):
    real = preflight.importlib.util.find_spec
    monkeypatch.setattr(preflight.importlib.util, "find_spec",
                        lambda name: None if name == "peft" else real(name))
    with pytest.raises(preflight.ConfigError, match="pip install peft"):
        ppo.check_settings(preflight.load_config(tiny_args(tiny, tmp_path, LORA_RANK=8)))
    with pytest.raises(preflight.ConfigError, match="LORA_RANK"):
        ppo.check_settings(preflight.load_config(tiny_args(tiny, tmp_path, LORA_RANK=-1)))


def test_the_qwen3_reward_model_scores_sentiment(tiny, tmp_path):
    path = sentiment.build_reward_model(tiny["policy"], str(tmp_path / "rm"), steps=150,
                                        log=lambda *a: None)
    scorer = models.RewardModel(path, torch.device("cpu"), torch.float32)
    pos = [" was great and i loved it.", " was wonderful and everyone smiled.",
           " is lovely and it made me happy."]
    neg = [" was terrible and i hated it.", " was awful and nobody smiled.",
           " is horrible and it made me angry."]
    prompts = ["the movie", "the food", "my day"]
    assert scorer(prompts, pos).min() > scorer(prompts, neg).max()


def test_the_trl_benchmark_settings_are_valid_and_match_the_runner():
    cfg = preflight.load_config(bench.TRL_PPO_ARGS)
    ppo.check_settings(cfg)
    assert ((cfg.BATCH_SIZE, cfg.MINI_BATCH_SIZE, cfg.PPO_EPOCHS, cfg.MAX_NEW_TOKENS)
            == (32, 8, 4, 16))
    # TRL's PPO loop never clips
    assert cfg.MAX_GRAD_NORM is None and cfg.CRITIC_MAX_GRAD_NORM is None
    assert cfg.CRITIC_LEARNING_RATE == cfg.LEARNING_RATE  # TRL: one optimizer, one learning rate
    with open(os.path.join(ppo.__file__.rsplit(os.sep, 1)[0], "bench", "trl_runner.py")) as f:
        runner = f.read()
    # main_ppo's defaults are the tiny comparison's settings (bench/speed.py --shapes --trl passes
    # others)
    import ast
    main_ppo = next(f for f in ast.walk(ast.parse(runner)) if isinstance(f, ast.FunctionDef)
                    and f.name == "main_ppo")
    names = [a.arg for a in main_ppo.args.args][-len(main_ppo.args.defaults):]
    defaults = dict(zip(names, (ast.literal_eval(d) for d in main_ppo.args.defaults)))
    assert defaults == {"prompts": None, "batch": 32, "response_len": 16, "epochs": 4,
                        "learning_rate": 3e-4}
    for theirs in ("per_device_train_batch_size=batch", "num_mini_batches=batch // min(batch, 8)",
                   "num_ppo_epochs=epochs", "response_length=response_len",
                   "learning_rate=learning_rate",
                   "kl_coef=0.05", 'kl_estimator="k1"', "cliprange=0.2", "cliprange_value=0.2",
                   "gamma=1.0", "lam=0.95", "adam_epsilon=1e-5"):
        assert theirs in runner, theirs


def test_the_memory_estimates_parameter_counts_match_real_models(monkeypatch):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    small = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2,
                 num_key_value_heads=1, head_dim=16, tie_word_embeddings=True)
    monkeypatch.setitem(bench.QWEN3, "0.6B", small)
    n_policy, _, _, n_lora = bench.parameter_counts(lora_rank=4)
    model = Qwen3ForCausalLM(Qwen3Config(**small))
    assert n_policy == sum(p.numel() for p in model.parameters())
    cfg = preflight.load_config(["--LORA_RANK=4"])
    lora_model = models.add_lora(model, cfg, "CAUSAL_LM")
    assert n_lora == sum(p.numel() for n, p in lora_model.named_parameters() if "lora_" in n)
    monkeypatch.undo()  # the estimate itself, for Qwen3-0.6B
    full, lora = bench.memory_estimate(), bench.memory_estimate(lora_rank=16)
    assert lora["reference"] == 0 and full["reference"] > 0 and lora["policy"] < full["policy"] / 5
    key = "activations (critic update)"
    assert bench.memory_estimate(checkpointing=True)[key] < full[key]


def test_the_memory_plan_divides_what_fsdp_shards_and_adds_what_it_gathers():
    (n, root, block), (n_critic, _, _), _, _ = bench.model_parts(0, "0.6B")
    cfg = bench.QWEN3["0.6B"]
    # tied embedding and final norm
    assert root == cfg["vocab_size"] * cfg["hidden_size"] + cfg["hidden_size"]
    assert root + cfg["num_hidden_layers"] * block == n
    one, two = bench.memory_estimate(), bench.memory_estimate(gpus=2, sharded=True)
    for key in ("policy", "reference", "critic", "reward model"):
        assert two[key] == pytest.approx(one[key] / 2)
    # FSDP's whole copies
    assert two["activations (policy update)"] > one["activations (policy update)"]
    assert bench.per_gpu_peak(two, "fsdp") < bench.per_gpu_peak(one, "one")
    assert bench.per_gpu_peak(bench.memory_estimate(size="8B", gpus=8, sharded=True,
                                                    checkpointing=True),
                              "fsdp") < 76 < bench.per_gpu_peak(
                                  bench.memory_estimate(size="8B"), "one")


def test_the_sharded_memory_measurement_runs_its_path_on_a_cpu(monkeypatch):
    """bench/speed.py --memory --sharded (measured on a GPU when lent) on tiny shapes in a
    one-process group: builds with parameters on the meta device, shards, gives storage, runs two
    updates; a CPU has no peak to report."""
    import torch.distributed as dist
    small = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2,
                 num_key_value_heads=1, head_dim=16, tie_word_embeddings=True)
    monkeypatch.setitem(bench.QWEN3, "0.6B", small)
    monkeypatch.setattr(bench, "DEBERTA_V3_LARGE",
                        dict(bench.DEBERTA_V3_LARGE, hidden_size=32, intermediate_size=64,
                                                        num_hidden_layers=2, num_attention_heads=2,
                                                        pooler_hidden_size=32, vocab_size=300))
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        for kw in ({}, {"lora_rank": 4, "checkpointing": True}):
            assert math.isnan(bench.measure_sharded_memory(
                micro_batch=2, prompt_len=8, response_len=4, device="cpu", **kw))
    finally:
        dist.destroy_process_group()


def test_the_forward_flop_count_matches_torchs_flop_counter():
    """forward_flops against FlopCounterMode on real forwards (eager attention, whose matmuls it
    counts) of Qwen3 shapes with grouped-query attention, several batch sizes, lengths and kept
    logits."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import Qwen3Config, Qwen3ForCausalLM
    for hidden, layers, heads, kv, n, length, kept in ((32, 2, 2, 1, 2, 10, 4),
                                                       (48, 3, 4, 2, 3, 7, 7),
                                                       (64, 1, 4, 4, 1, 12, 1)):
        cfg = dict(vocab_size=211, hidden_size=hidden, intermediate_size=2 * hidden + 8,
                   num_hidden_layers=layers,
                   num_attention_heads=heads, num_key_value_heads=kv, head_dim=16,
                   tie_word_embeddings=True)
        model = Qwen3ForCausalLM(Qwen3Config(**cfg, attn_implementation="eager")).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(input_ids=torch.randint(0, 211, (n, length)), logits_to_keep=kept)
        assert bench.forward_flops(cfg, n, length, kept) == counter.get_total_flops()


def test_the_machine_limits_are_measured_not_assumed():
    peak, bandwidth = bench.matmul_peak(
        n=256, seconds=0.05), bench.memory_bandwidth(mib=8, seconds=0.05)
    assert math.isfinite(peak) and peak > 0 and math.isfinite(bandwidth) and bandwidth > 0


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
