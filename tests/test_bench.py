"""The bench/ scripts on tiny shapes: bench/speed.py's phases, memory plans, FLOP counts and machine
limits, the TRL runner's settings, the compiled decode, the real-model record. Nothing is timed."""
import json
import math
import os
import shutil

import pytest
import torch
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, Qwen3Config,
                          Qwen3ForCausalLM)

from bench import speed as bench
import ppo
from machinery import models, sampling
from conftest import check_settings, load_config, tiny_args


def test_bench_phases_add_up_to_the_step(tiny, tmp_path):
    settings = [a for a in tiny_args(tiny, tmp_path)
                if not a.startswith(("--OUTPUT_DIR=", "--MAX_STEPS="))]
    summary = bench.measure(settings, steps=2, warmup=1)
    phases = sum(summary[k]["mean"] for k in ("time_generate", "time_reward", "time_forward",
                                              "time_update"))
    step = summary["step_time"]["mean"]
    assert 0 < phases <= step and phases > 0.9 * step  # the four phases are (nearly) the whole step
    assert summary["tokens_per_sec"] > 0
    assert summary["peak_rss_mib"] > 100
    assert summary["peak_cuda_mib"] == {}
    assert "| update |" in bench.phase_table(summary)


TINY_SHAPE = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2,
                  num_key_value_heads=1, head_dim=16, tie_word_embeddings=True)
TINY_DEBERTA = dict(bench.DEBERTA_V3_LARGE, vocab_size=200, hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=2, max_position_embeddings=64, position_buckets=16,
                    pooler_hidden_size=32)


@pytest.fixture
def tiny_shapes(tmp_path, monkeypatch):
    """bench/speed.py's real-shape machinery on shapes small enough for a test: the same code, other
    numbers."""
    monkeypatch.setitem(bench.SHAPES, "tiny", TINY_SHAPE)
    monkeypatch.setattr(bench, "DEBERTA_V3_LARGE", TINY_DEBERTA)
    monkeypatch.setattr(bench, "SHAPES_DIR", str(tmp_path / "shapes"))
    return tmp_path


@pytest.mark.parametrize("qwen3_reward", [True, False])
def test_real_shape_models_are_saved_and_run_through_the_trainer(tiny_shapes, qwen3_reward):
    folder = bench.build_shape("tiny", prompt_len=6, qwen3_reward=qwen3_reward, n_prompts=8)
    # once
    assert folder.startswith(str(tiny_shapes))
    assert bench.build_shape("tiny", 6, qwen3_reward, 8) == folder
    tok = AutoTokenizer.from_pretrained(f"{folder}/policy")
    rows = [json.loads(line)["prompt"] for line in open(f"{folder}/prompts.jsonl")]
    assert len(rows) == 8 and all(len(tok(r)["input_ids"]) == 6 for r in rows)  # one token per word
    # every id decodes to a word
    assert tok.decode([5, 6, 299], skip_special_tokens=True) == "w2 w3 w296"
    reward = AutoConfig.from_pretrained(f"{folder}/reward")
    assert reward.model_type == ("qwen3" if qwen3_reward else "deberta-v2")
    assert reward.num_labels == 1
    settings = bench.shape_settings(folder, batch=2, prompt_len=6, response_len=4, epochs=2)
    assert f"--CRITIC_MODEL={folder}/{'reward' if qwen3_reward else 'policy'}" in settings
    # the trainer runs on the DeBERTa case (this one's models differ only in the reward's class)
    if qwen3_reward:
        return
    summary = bench.measure_shape("tiny", 2, 6, 4, 2, steps=1, warmup=0, qwen3_reward=qwen3_reward)
    flops = summary["flops"]
    assert flops["step_time"] == sum(flops[k] for k in bench.PHASES[:-1])
    assert min(flops.values()) > 0
    assert summary["limits"]["matmul_peak"] > 0 and summary["decode"]["bound_tokens_per_sec"] > 0
    assert "| update |" in bench.shape_table(summary)
    assert "of the bandwidth" in bench.shape_table(summary)


def test_the_rollout_flop_count_matches_torchs_counter_on_the_sampler(tiny_shapes):
    """shape_flops' generate and forward phases against FlopCounterMode on the trainer's own sampler
    (prompt forward, then one decoding step per token over a growing KV cache) and its rollout
    forwards (eager attention, whose matmuls the counter sees)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import Qwen3Config, Qwen3ForCausalLM
    model = Qwen3ForCausalLM(Qwen3Config(**TINY_SHAPE, attn_implementation="eager")).eval()
    n, Tp, Tr = 3, 5, 7
    ids = torch.randint(3, 300, (n, Tp))
    with FlopCounterMode(display=False) as counter:
        # no EOS: Tr tokens
        out, _ = ppo.sample(model, ids, torch.ones_like(ids), Tr, 1.0, torch.tensor([-1]), 0)
    assert out.shape == (n, Tr)
    expected = bench.shape_flops("tiny", n, Tp, Tr, epochs=4, qwen3_reward=True)
    assert counter.get_total_flops() == expected["time_generate"]
    full = torch.cat([ids, out], 1)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        for _ in range(2):  # the policy's and the reference's log-probs
            ppo.response_logprobs(model, full, torch.ones_like(full), Tp, 1.0)
        # the critic's backbone (its one-output head is left out of the count)
        model.model(input_ids=full)
    assert counter.get_total_flops() == expected["time_forward"]
    assert bench.shape_flops("tiny", n, Tp, Tr, 4, True, lora=True)["time_update"] == \
        expected["time_update"] * 2 // 3  # no weight gradients for a frozen base


def test_decoding_bytes_count_weights_once_and_the_growing_cache():
    cfg = dict(TINY_SHAPE)
    params = sum(p.numel() for p in Qwen3ForCausalLM(Qwen3Config(**cfg)).parameters())
    kv = 2 * 2 * 1 * 16  # K and V x layers x KV heads x head_dim, per token
    n, Tp, Tr = 3, 5, 4
    # bf16 weights and cache
    expected = sum(params * 2 + n * (Tp + t) * kv * 2 for t in range(1, Tr))
    assert bench.decode_bytes(cfg, n, Tp, Tr, 2, 2) == expected
    # untied, the output layer is read whole and the input embedding a row per sequence (left out):
    # the same bytes
    assert bench.decode_bytes(dict(cfg, tie_word_embeddings=False), n, Tp, Tr, 2, 2) == expected


@pytest.mark.parametrize("eos_every,steps", [(None, 9), (7, 20), (5, 20), (15, 40)])
def test_compiled_decoding_draws_what_the_default_sampler_draws(tiny, monkeypatch, eos_every,
                                                                 steps):
    """COMPILE_DECODE's static cache (a mask over the whole preallocated cache, one shape for every
    step), its whole step in one function with every step's uniforms made up front, and its EOS
    test every SYNC_EVERY steps, with torch.compile replaced by the identity so that the test checks
    these, not the compiler: the same tokens from the same uniforms, cut at the same step, and
    log-probs equal to rounding, with left padding. eos_every: every eos_every-th token id ends a
    row (rows end at different steps, and all before the limit); None: none does."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    model = AutoModelForCausalLM.from_pretrained(tiny["policy"]).eval()
    ids, mask = ppo.left_pad([[5, 6, 7, 8], [9, 10], [11, 12, 13]], pad_id=0)
    uniforms = ppo.uniforms_for(0, 0, 3, slice(None))
    eos = torch.tensor([-1]) if eos_every is None else \
        torch.arange(1, model.config.vocab_size, eos_every)
    args = (model, ids, mask, steps, 0.8, eos, 0, uniforms)
    plain, plain_logp = ppo.sample(*args)
    static, static_logp = ppo.sample(*args, compiled=True)
    assert torch.equal(plain, static)
    if eos_every is None:
        assert plain.shape == (3, steps)
    else:  # ended early, rows at different steps, and past the first EOS test
        ended_at = torch.isin(plain, eos).int().argmax(1)
        assert plain.shape[1] < steps and len(set(ended_at.tolist())) > 1
        # 7: all ended before the first test; 5 and 15 (widths 12, 27): after one or three
        if eos_every != 7:
            assert plain.shape[1] > sampling.SYNC_EVERY
    torch.testing.assert_close(static_logp, plain_logp, rtol=0, atol=1e-5)


def test_compiled_decoding_compiles_and_draws_the_same_tokens(tiny):
    """The same with torch.compile itself (inductor on the CPU; 30 s, most of it compiling): the
    graph that holds the draw and the EOS test compiles, and the tokens are the default sampler's,
    rows ending at different steps and after the first EOS test; a second rollout reuses the
    graph."""
    model = AutoModelForCausalLM.from_pretrained(tiny["policy"]).eval()
    ids, mask = ppo.left_pad([[5, 6, 7, 8], [9, 10], [11, 12, 13]], pad_id=0)
    eos = torch.arange(1, model.config.vocab_size, 15)
    args = (model, ids, mask, 40, 0.8, eos, 0, ppo.uniforms_for(0, 0, 3, slice(None)))
    plain, plain_logp = ppo.sample(*args)
    for _ in range(2):
        static, static_logp = ppo.sample(*args, compiled=True)
        assert torch.equal(plain, static) and sampling.SYNC_EVERY < plain.shape[1] < 40
        torch.testing.assert_close(static_logp, plain_logp, rtol=0, atol=1e-5)


@pytest.mark.parametrize("argv,message",
                         [(["--shapes=medium,2B"], "unknown 2B; the shapes are medium, 0.6B"),
                                          (["--shapes=medium", "--", "--LORA_RANK=x"],
                                           "LORA_RANK must be")])
def test_bench_refuses_bad_shapes_and_settings_in_one_line(monkeypatch, capsys, argv, message):
    """Refused before any model is built or loaded."""
    monkeypatch.setattr(bench, "build_shape", lambda *a,
                        **k: pytest.fail("built a model for bad input"))
    monkeypatch.setattr("sys.argv", ["bench/speed.py", *argv])
    with pytest.raises(SystemExit) as stop:
        bench.main()
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and message in err and len(err.splitlines()) == 1


def test_the_real_model_record_adds_up_runs_of_several_machines(tmp_path, monkeypatch):
    """bench/real_model.py keeps every evaluated run in a record beside runs/ (scratch): a second
    machine's runs join the first's, and an evaluation whose base score differs is refused."""
    from bench import real_model
    monkeypatch.setattr(real_model, "OUT", str(tmp_path / "runs"))
    monkeypatch.setattr(real_model, "RECORD", str(tmp_path / "record.json"))
    monkeypatch.setattr(real_model, "BASE", str(tmp_path / "base"))

    def machine(runs, base_score):
        """runs/ as one machine leaves it: each run's metrics and time, one evaluate.json."""
        task = tmp_path / "runs" / "addition"
        rows = [{"policy": str(tmp_path / "base"), "mean": base_score, "stderr": 0.01}]
        for name, (score, rewards) in runs.items():
            (task / name / "policy").mkdir(parents=True)
            (task / name / "wall.json").write_text(json.dumps({"seconds": 100.0}))
            (task / name / "metrics.jsonl").write_text(
                "".join(json.dumps({"reward": r, "time_eval": 5.0}) + "\n" for r in rewards))
            rows.append({"policy": str(task / name / "policy"), "mean": score, "stderr": 0.02})
        (task / "evaluate.json").write_text(json.dumps(rows))

    machine({"ppo-lrdefault-seed0": (0.5, [0.1, 0.3])}, base_score=0.025)
    kept = real_model.record("addition")
    assert kept["base"] == [0.025, 0.01]
    assert kept["runs"]["ppo-lrdefault-seed0"] == {"held_out": [0.5, 0.02], "rewards": [0.1, 0.3],
                                                   "seconds": 100.0, "eval_seconds": 10.0}
    shutil.rmtree(tmp_path / "runs")  # scratch lost; another machine, another seed
    machine({"ppo-lrdefault-seed2": (0.4, [0.2, 0.2])}, base_score=0.025)
    kept = real_model.record("addition")
    assert sorted(kept["runs"]) == ["ppo-lrdefault-seed0", "ppo-lrdefault-seed2"]
    assert json.loads((tmp_path / "record.json").read_text())["addition"] == kept
    shutil.rmtree(tmp_path / "runs")
    machine({"ppo-lrdefault-seed1": (0.4, [0.2, 0.2])}, base_score=0.030)
    with pytest.raises(real_model.script.Refusal,
                       match="the base model scored 0.0300 here and 0.0250"):
        real_model.record("addition")
    assert "ppo-lrdefault-seed1" not in json.loads((tmp_path / "record.json").read_text())[
        "addition"]["runs"]


def test_packing_by_tokens_cuts_the_counted_flops_by_about_the_padding(capsys):
    """bench/update_cost.py flops: packed micro-batches compute fewer tokens, none below the valid
    ones, and their FLOPs fall at least as much as the tokens (attention is quadratic)."""
    from types import SimpleNamespace
    from bench import update_cost
    update_cost.flops(SimpleNamespace(seed=0, minibatch=16, micro_size=4, budget=4 * 96,
                                      prompt_len=32, response_len=64))
    r = json.loads(capsys.readouterr().out)
    rows, packed = r["micro_batch_size"], r["micro_batch_tokens"]
    assert r["valid_tokens"] <= packed["tokens_computed"] < rows["tokens_computed"]
    assert r["flops_cut"] >= 1 - packed["tokens_computed"] / rows["tokens_computed"] > 0


def test_the_trl_benchmark_settings_are_valid_and_match_the_runner():
    cfg = load_config(bench.TRL_PPO_ARGS)
    check_settings(cfg)
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
    cfg = load_config(["--LORA_RANK=4"])
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
