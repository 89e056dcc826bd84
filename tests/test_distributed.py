"""Data parallelism and FSDP2 sharding under torchrun (issues 6 and 14): the pieces as pure
functions, then real runs of two CPU processes on gloo compared with one process on the same global
batch."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from machinery import distributed
import ppo
from machinery.script import Refusal
from machinery import models
from machinery.sampling import draw_tokens
import reward_fns
from conftest import ROOT, load_config, tiny_args

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_draw_tokens_is_the_inverse_cdf():
    g = torch.Generator().manual_seed(0)
    # some zero-probability tokens
    probs = torch.rand(64, 7, generator=g) * (torch.rand(64, 7, generator=g) > 0.3)
    probs[:, 0] += 1e-3  # no all-zero row
    u = torch.rand(64, generator=g)
    u[:2] = torch.tensor([0.0, 1.0 - 1e-7])
    expected = []
    # brute force: walk the cumulative sum
    for row, x in zip(probs.tolist(), u.tolist(), strict=True):
        target, total = x * sum(row), 0.0
        for j, p in enumerate(row):
            total += p
            if total > target:
                expected.append(j)
                break
        else:
            expected.append(max(j for j, p in enumerate(row) if p > 0))
    assert draw_tokens(probs, u).tolist() == expected
    picked = probs[torch.arange(64), draw_tokens(probs, u)]
    assert (picked > 0).all()  # never a token of probability zero


def test_a_rows_uniforms_do_not_depend_on_how_the_batch_is_split():
    whole = ppo.uniforms_for(0, 40, 8, slice(0, 8))
    halves = [ppo.uniforms_for(0, 40, 8, slice(0, 4)), ppo.uniforms_for(0, 40, 8, slice(4, 8))]
    for t in range(3):
        assert torch.equal(whole(t), torch.cat([h(t) for h in halves]))
    assert not torch.equal(whole(0), whole(1))  # a new draw at every decoding step
    # and for every rollout
    assert not torch.equal(whole(0), ppo.uniforms_for(0, 48, 8, slice(0, 8))(0))


def test_each_rank_takes_its_rows_of_a_global_minibatch():
    mb = torch.tensor([5, 1, 6, 2, 7])
    assert distributed.rank_minibatch(mb, slice(0, 4)).tolist() == [1, 2]
    assert distributed.rank_minibatch(mb, slice(4, 8)).tolist() == [1, 2, 3]
    assert distributed.rank_minibatch(torch.tensor([0, 1]), slice(4, 8)).tolist() == []
    ranks = ppo.Ranks({"WORLD_SIZE": "2", "RANK": "1"})
    assert ranks.my_rows(8) == slice(4, 8) and ranks.active


def test_settings_that_do_not_split_over_the_processes_are_refused():
    with pytest.raises(Refusal, match="multiple of 3"):
        models.check_distributed(load_config(["--BATCH_SIZE=8"]), 3)
    with pytest.raises(Refusal, match="DYNAMIC_SAMPLING"):
        models.check_distributed(load_config(["--ALGORITHM=dapo", "--GROUP_SIZE=4",
                                                     "--BATCH_SIZE=8"]), 2)
    models.check_distributed(load_config(["--BATCH_SIZE=8"]), 2)


def test_each_process_gets_its_own_gpus():
    cfg = load_config([])
    def devices(n, rank, world):
        return {k: str(v) for k, v in models.resolve_devices(cfg, n, rank, world).items()}
    assert devices(4, 1, 2) == {"policy": "cuda:2", "ref": "cuda:2", "critic": "cuda:3",
                                "reward": "cuda:3"}
    assert devices(2, 1, 2) == dict.fromkeys(("policy", "ref", "critic", "reward"), "cuda:1")
    assert devices(0, 1, 2) == dict.fromkeys(("policy", "ref", "critic", "reward"), "cpu")
    with pytest.raises(Refusal, match="--nproc_per_node=1"):
        models.resolve_devices(cfg, 1, 1, 2)
    with pytest.raises(Refusal,
                       match="DEVICE_CRITIC='cuda:1' would put every torchrun process"):
        models.resolve_devices(load_config(["--DEVICE_CRITIC=cuda:1"]), 4, 1, 2)
    cpu_critic = load_config(["--DEVICE_CRITIC=cpu"])
    assert str(models.resolve_devices(cpu_critic, 4, 1, 2)["critic"]) == "cpu"


def test_every_rank_runs_as_many_micro_batches_as_the_busiest():
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        n_rows, world, micro = 12, [1, 2, 3, 4, 6][seed % 5], 1 + seed % 3
        mb = torch.randperm(n_rows, generator=g)[:1 + seed % n_rows]
        # brute force: each rank's rows, split into micro-batches
        held = [len(distributed.rank_minibatch(
            mb, slice(r * n_rows // world, (r + 1) * n_rows // world))) for r in range(world)]
        assert (distributed.micro_batch_count(mb, n_rows, world, micro)
                == max(-(-h // micro) for h in held))


def test_sharding_settings_and_devices():
    assert [distributed.sharding_on(s, w) for s in ("auto", "none", "fsdp") for w in (1, 2)] == \
        [False, True, False, False, True, True]
    cfg = load_config(["--SHARDING=fsdp"])
    with pytest.raises(Refusal, match="not started by torchrun"):
        distributed.check_sharding(cfg, ppo.Ranks({}))
    distributed.check_sharding(cfg, ppo.Ranks({"MASTER_ADDR": "localhost"}))
    # refused sharded (auto over 2), allowed copied
    compiled = load_config(["--COMPILE_DECODE=True"])
    with pytest.raises(Refusal,
                       match="COMPILE_DECODE=True is not supported with sharded"):
        distributed.check_sharding(compiled,
                                   ppo.Ranks({"MASTER_ADDR": "localhost", "WORLD_SIZE": "2"}))
    distributed.check_sharding(load_config(["--COMPILE_DECODE=True", "--SHARDING=none"]),
                               ppo.Ranks({"MASTER_ADDR": "localhost", "WORLD_SIZE": "2"}))
    # one GPU each
    devices = {k: str(v) for k, v in models.resolve_devices(cfg, 8, 3, 4, sharded=True).items()}
    assert devices == dict.fromkeys(("policy", "ref", "critic", "reward"), "cuda:3")
    with pytest.raises(Refusal, match="one device per process"):
        models.resolve_devices(load_config(["--DEVICE_CRITIC=cpu"]), 1, sharded=True)


def test_sharding_without_torchrun_is_one_line_before_any_work(tmp_path, capsys):
    assert ppo.main(["--SHARDING=fsdp", f"--OUTPUT_DIR={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "torchrun --standalone --nproc_per_node=N ppo.py" in err
    assert not (tmp_path / "run").exists()


def test_fsdp_units_are_the_transformer_blocks(tiny):
    from transformers import AutoModelForSequenceClassification
    policy = AutoModelForCausalLM.from_pretrained(tiny["policy"])
    assert distributed.blocks(policy) == list(policy.model.layers)
    reward = AutoModelForSequenceClassification.from_pretrained(tiny["reward"])
    # no _no_split_modules: its ModuleList
    assert distributed.blocks(reward) == list(reward.deberta.encoder.layer)


def test_a_frozen_sharded_model_gives_back_its_gathered_weights_after_a_forward(tiny):
    """A trained root keeps its weights gathered for the backward; a frozen one (reference, reward
    model) has no backward and frees them at once, else they would stay whole for the rest of the
    run."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh, ids = init_device_mesh("cpu", (1,)), torch.tensor([[1, 2, 3]])
        trained = distributed.shard_model(AutoModelForCausalLM.from_pretrained(tiny["policy"]),
                                          mesh)
        frozen = distributed.shard_model(
            AutoModelForCausalLM.from_pretrained(tiny["policy"]).requires_grad_(False),
            mesh)
        with torch.no_grad():
            trained(input_ids=ids), frozen(input_ids=ids)
        # gathered, waiting for a backward
        assert not isinstance(trained.model.embed_tokens.weight, DTensor)
        assert isinstance(frozen.model.embed_tokens.weight, DTensor)  # back to this process's shard
    finally:
        dist.destroy_process_group()


def test_an_optimizer_state_keyed_by_number_loads_into_a_sharded_model(tiny):
    """A checkpoint written without sharding (parameters numbered) loaded into a model sharded over
    a one-process group (re-keyed by name, then torch.distributed.checkpoint's loader takes the
    shard), and the state gathered from it again (keyed by name) loaded into a whole model: the same
    moments both ways."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    def trained():
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny["policy"])
        opt = ppo.make_optimizer(model, 1e-3, weight_decay=0.1)  # two parameter groups
        model(input_ids=torch.tensor([[1, 2, 3]])).logits.square().mean().backward()
        opt.step()
        return model, opt
    model, opt = trained()
    named = distributed.state_by_name(opt.state_dict(), opt, model)
    assert named["param_groups"][0]["params"][0] == "model.embed_tokens.weight"
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        sharded = distributed.shard_model(AutoModelForCausalLM.from_pretrained(tiny["policy"]),
                                          init_device_mesh("cpu", (1,)))
        sharded_opt = ppo.make_optimizer(sharded, 1e-3, weight_decay=0.1)
        distributed.load_optimizer_state(sharded, sharded_opt, opt.state_dict())
        gathered = distributed.optimizer_state(sharded, sharded_opt)
    finally:
        dist.destroy_process_group()
    assert isinstance(gathered["param_groups"][0]["params"][0], str)
    whole = AutoModelForCausalLM.from_pretrained(tiny["policy"])
    whole_opt = ppo.make_optimizer(whole, 1e-3, weight_decay=0.1)
    distributed.load_optimizer_state(whole, whole_opt, gathered)
    for p, q, r in zip(model.parameters(), sharded.parameters(), whole.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][key], distributed.whole(sharded_opt.state[q][key])), key
            assert torch.equal(opt.state[p][key], whole_opt.state[r][key]), key


def torchrun(args, nproc=2, env=None):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}",
           os.path.join(ROOT, "ppo.py"), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, ROOT]), **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def ppo_args(tiny, out, **overrides):
    """PPO for 4 steps, checkpoints after steps 1 and 3, held-out evaluation of 15 rows (split 8 +
    7) at steps 0, 2 and the end; the reward function counts its calls, to die at one
    (PPO_TEST_KILL_AT). Micro-batches of 2 rows in minibatches of 4: a rank often holds 3 rows of a
    minibatch and the other 1 (or 4 and 0), so that sharded, the second runs a stand-in micro-batch
    of weight 0."""
    return tiny_args(tiny, out, **{**dict(REWARD_MODEL="reward_fns:sentiment_with_faults",
                                          MAX_STEPS=4, SAVE_EVERY=2, MICRO_BATCH_SIZE=2,
                                          EVAL_DATASET=tiny["prompts"], EVAL_MAX_PROMPTS=5,
                                          EVAL_SAMPLES=3, EVAL_EVERY=2), **overrides})


@pytest.fixture(scope="module")
def one_process(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    reward_fns.reset_faults()
    assert ppo.main(ppo_args(tiny, out)) == 0
    return out


def assert_same_run(one, two, tol):
    """The same rows (the samples belong to the rows, not the processes), statistics of the whole
    batch within tol, and the saved policy/ and critic/ folders, read with plain from_pretrained,
    with the same weights."""
    rows_one, rows_two = read_jsonl(one / "metrics.jsonl"), read_jsonl(two / "metrics.jsonl")
    assert [r["step"] for r in rows_two] == [r["step"] for r in rows_one]
    for a, b in zip(rows_one, rows_two, strict=True):
        assert set(a) == set(b)
        for key in ("reward", "response_length", "eval_reward", "eval_response_length"):
            if key in a:
                assert a[key] == pytest.approx(b[key], abs=1e-6), (a["step"], key)
        for key in ("policy_loss", "value_loss", "advantage", "entropy", "kl", "grad_norm",
                    "critic_grad_norm", "clipfrac"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=tol, abs=tol), (a["step"], key)
    for folder, cls in (("policy", AutoModelForCausalLM),
                        ("critic", AutoModelForSequenceClassification)):
        if (one / folder).exists():
            # The same tensors in the files (tied embeddings saved once, as save_pretrained does for
            # a whole model).
            assert safetensors_keys(one / folder) == safetensors_keys(two / folder)
            w_one, w_two = (cls.from_pretrained(run / folder).state_dict() for run in (one, two))
            assert w_one.keys() == w_two.keys()
            for k in w_one:
                torch.testing.assert_close(w_one[k], w_two[k], rtol=0, atol=min(tol, 1e-4))


def safetensors_keys(folder):
    from safetensors import safe_open
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return sorted(f.keys())


def held_by_each_process(stdout):
    """{model: (parameters rank 0 holds, parameters in all)} from the start-up line of a sharded
    run."""
    line = next(line for line in stdout.splitlines()
                if line.startswith("parameters held by each process: "))
    held = re.findall(r"([\w ]+?) ([\d,]+) of ([\d,]+)", line.split(": ", 1)[1])
    return {name.strip(", "): (int(a.replace(",", "")), int(b.replace(",", ""))) for name, a,
            b in held}


@pytest.mark.parametrize("sharding", ["fsdp", pytest.param("none", marks=pytest.mark.slow)])
def test_two_processes_train_like_one(tiny, tmp_path, one_process, sharding):
    """PPO with held-out evaluation, on two processes with the models sharded (SHARDING=auto does
    it) or copied, against one process on the same global batch. Sharded, the micro-batches are
    packed by a token budget (the one process's are 2 rows each): ranks whose rows pack into fewer
    micro-batches run stand-ins, and the packing changes no gradient."""
    packing = dict(MICRO_BATCH_TOKENS=40) if sharding == "fsdp" else {}
    result = torchrun(ppo_args(tiny, tmp_path, SHARDING="auto" if sharding == "fsdp" else "none",
                               **packing))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("settings:") == 1  # rank 0 alone speaks and writes
    # the same sums in another order: float32 rounding (measured: 3e-7 at most)
    if sharding == "fsdp":
        held = held_by_each_process(result.stdout)
        assert set(held) == {"policy", "reference", "critic"}  # the reward here is a function
        # each process holds half of every model (up to padding)
        for name, (mine, total) in held.items():
            assert abs(mine - total / 2) <= 0.02 * total, (name, mine, total)
        assert_same_run(one_process, tmp_path, tol=1e-5)
    else:  # the summed buckets of the replicated path
        assert "weights identical on all 2 processes" in result.stdout
        assert_same_run(one_process, tmp_path, tol=1e-3)


# slow (30 s): sharding is covered by test_two_processes_train_like_one[fsdp], LoRA by test_options
@pytest.mark.slow
def test_grpo_with_lora_sharded_trains_like_one_process(tiny, tmp_path):
    """GRPO with LoRA adapters (the reference: adapters off) and the DeBERTa reward model, all
    sharded; the final policy/ has the adapters merged in, on rank 0 from the gathered weights."""
    args = dict(ALGORITHM="grpo", GROUP_SIZE=2, BATCH_SIZE=4, LORA_RANK=4, MAX_STEPS=2)
    assert ppo.main(tiny_args(tiny, tmp_path / "one", **args)) == 0
    result = torchrun(tiny_args(tiny, tmp_path / "two", SHARDING="fsdp", **args))
    assert result.returncode == 0, result.stderr[-3000:]
    held = held_by_each_process(result.stdout)
    assert set(held) == {"policy", "reward model deberta"}
    for name, (mine, total) in held.items():
        assert abs(mine - total / 2) <= 0.02 * total, (name, mine, total)
    # merged: a plain model
    assert not (tmp_path / "two" / "policy" / "adapter_config.json").exists()
    assert_same_run(tmp_path / "one", tmp_path / "two", tol=1e-5)


# 42 s: the default run keeps one process's SIGKILL-and-resume and the sharded training above
@pytest.mark.slow
def test_a_sharded_run_killed_and_resumed_equals_the_uninterrupted_run(tiny, tmp_path, one_process):
    """SIGKILL inside step 2 (reward calls: 1 the start-up probe, 2 the evaluation at step 0, 3-4
    steps 0-1, 5 the evaluation at step 2, 6 step 2) of both processes; the checkpoint after step 1
    resumes under torchrun, and in one unsharded process."""
    killed = torchrun(ppo_args(tiny, tmp_path / "run"), env={"PPO_TEST_KILL_AT": "6"})
    assert killed.returncode != 0
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [0, 1]
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    resumed = torchrun(ppo_args(tiny, tmp_path / "run", RESUME=True))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    assert_same_run(one_process, tmp_path / "run", tol=1e-5)
    # The same sharded checkpoint resumed by one process, unsharded: the same run too.
    reward_fns.reset_faults()
    assert ppo.main(ppo_args(tiny, tmp_path / "copy", RESUME=True)) == 0
    assert_same_run(one_process, tmp_path / "copy", tol=1e-5)


def test_a_batch_that_does_not_split_is_refused_under_torchrun(tiny, tmp_path):
    result = torchrun(tiny_args(tiny, tmp_path / "run", BATCH_SIZE=7, MINI_BATCH_SIZE=7,
                                MICRO_BATCH_SIZE=7))
    assert result.returncode != 0
    assert result.stderr.count("BATCH_SIZE=7 prompts per step cannot be split evenly over 2 "
                               "processes") == 1
    assert not (tmp_path / "run").exists()
