"""Data parallelism under torchrun (issue 6): the pieces as pure functions, then real runs of two CPU processes on
gloo compared with one process on the same global batch."""
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

import ppo
from conftest import ROOT, tiny_args


def test_draw_tokens_is_the_inverse_cdf():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(64, 7, generator=g) * (torch.rand(64, 7, generator=g) > 0.3)  # some zero-probability tokens
    probs[:, 0] += 1e-3  # no all-zero row
    u = torch.rand(64, generator=g)
    u[:2] = torch.tensor([0.0, 1.0 - 1e-7])
    expected = []
    for row, x in zip(probs.tolist(), u.tolist(), strict=True):  # brute force: walk the cumulative sum
        target, total = x * sum(row), 0.0
        for j, p in enumerate(row):
            total += p
            if total > target:
                expected.append(j)
                break
        else:
            expected.append(max(j for j, p in enumerate(row) if p > 0))
    assert ppo.draw_tokens(probs, u).tolist() == expected
    picked = probs[torch.arange(64), ppo.draw_tokens(probs, u)]
    assert (picked > 0).all()  # never a token of probability zero


def test_a_rows_uniforms_do_not_depend_on_how_the_batch_is_split():
    whole = ppo.uniforms_for(0, 40, 8, slice(0, 8))
    halves = [ppo.uniforms_for(0, 40, 8, slice(0, 4)), ppo.uniforms_for(0, 40, 8, slice(4, 8))]
    for t in range(3):
        assert torch.equal(whole(t), torch.cat([h(t) for h in halves]))
    assert not torch.equal(whole(0), whole(1))  # a new draw at every decoding step
    assert not torch.equal(whole(0), ppo.uniforms_for(0, 48, 8, slice(0, 8))(0))  # and for every rollout


def test_each_rank_takes_its_rows_of_a_global_minibatch():
    mb = torch.tensor([5, 1, 6, 2, 7])
    assert ppo.rank_minibatch(mb, slice(0, 4)).tolist() == [1, 2]
    assert ppo.rank_minibatch(mb, slice(4, 8)).tolist() == [1, 2, 3]
    assert ppo.rank_minibatch(torch.tensor([0, 1]), slice(4, 8)).tolist() == []
    ranks = ppo.Ranks({"WORLD_SIZE": "2", "RANK": "1"})
    assert ranks.my_rows(8) == slice(4, 8) and ranks.active


def test_settings_that_do_not_split_over_the_processes_are_refused():
    with pytest.raises(ppo.ConfigError, match="multiple of 3"):
        ppo.check_distributed(ppo.load_config(["--BATCH_SIZE=8"]), 3)
    with pytest.raises(ppo.ConfigError, match="DYNAMIC_SAMPLING"):
        ppo.check_distributed(ppo.load_config(["--ALGORITHM=dapo", "--GROUP_SIZE=4", "--BATCH_SIZE=8"]), 2)
    ppo.check_distributed(ppo.load_config(["--BATCH_SIZE=8"]), 2)


def test_each_process_gets_its_own_gpus():
    cfg = ppo.load_config([])
    devices = lambda n, rank, world: {k: str(v) for k, v in ppo.resolve_devices(cfg, n, rank, world).items()}  # noqa
    assert devices(4, 1, 2) == {"policy": "cuda:2", "ref": "cuda:2", "critic": "cuda:3", "reward": "cuda:3"}
    assert devices(2, 1, 2) == dict.fromkeys(("policy", "ref", "critic", "reward"), "cuda:1")
    assert devices(0, 1, 2) == dict.fromkeys(("policy", "ref", "critic", "reward"), "cpu")
    with pytest.raises(ppo.ConfigError, match="--nproc_per_node=1"):
        ppo.resolve_devices(cfg, 1, 1, 2)
    with pytest.raises(ppo.ConfigError, match="DEVICE_CRITIC='cuda:1' would put every torchrun process"):
        ppo.resolve_devices(ppo.load_config(["--DEVICE_CRITIC=cuda:1"]), 4, 1, 2)
    assert str(ppo.resolve_devices(ppo.load_config(["--DEVICE_CRITIC=cpu"]), 4, 1, 2)["critic"]) == "cpu"


def torchrun(args, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           os.path.join(ROOT, "ppo.py"), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_two_processes_train_like_one(tiny, tmp_path, algorithm):
    extra = {"ALGORITHM": algorithm, "MAX_STEPS": 3}
    if algorithm == "grpo":  # groups of 2: each process must hold whole groups
        extra.update(GROUP_SIZE=2, BATCH_SIZE=4)
    else:  # held-out evaluation too: 15 rows, which the two processes split 8 + 7
        extra.update(EVAL_DATASET=tiny["prompts"], EVAL_MAX_PROMPTS=5, EVAL_SAMPLES=3, EVAL_EVERY=2)
    one, two = tmp_path / "one", tmp_path / "two"
    assert ppo.main(tiny_args(tiny, one, **extra)) == 0
    result = torchrun(tiny_args(tiny, two, **extra))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "weights identical on all 2 processes" in result.stdout
    assert result.stdout.count("settings:") == 1  # rank 0 alone speaks and writes

    rows_one, rows_two = read_jsonl(one / "metrics.jsonl"), read_jsonl(two / "metrics.jsonl")
    assert [r["step"] for r in rows_two] == ([0, 1, 2] if algorithm == "grpo" else [0, 1, 2, 3])
    assert [r["step"] for r in rows_two if "eval_reward" in r] == ([] if algorithm == "grpo" else [0, 2, 3])
    for a, b in zip(rows_one, rows_two, strict=True):
        if "eval_reward" in a:  # the same held-out responses, whatever the number of processes
            assert (a["eval_reward"], a["eval_response_length"]) == pytest.approx(
                (b["eval_reward"], b["eval_response_length"]), abs=1e-6)
        if "reward" not in a:  # the final policy's evaluation
            continue
        # The same samples (the uniforms belong to the rows, not the processes) and statistics of the whole batch.
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)
        assert a["response_length"] == b["response_length"]
        for key in ("policy_loss", "advantage", "entropy", "kl", "grad_norm", "clipfrac"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-5), key
    w_one = AutoModelForCausalLM.from_pretrained(one / "policy").state_dict()
    w_two = AutoModelForCausalLM.from_pretrained(two / "policy").state_dict()
    for k in w_one:
        torch.testing.assert_close(w_one[k], w_two[k], rtol=0, atol=1e-4)


def test_a_torchrun_run_resumes_under_torchrun(tiny, tmp_path):
    out = tmp_path / "run"
    first = torchrun(tiny_args(tiny, out, MAX_STEPS=2))
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = torchrun(tiny_args(tiny, out, MAX_STEPS=3, RESUME=True))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]
    assert "resuming from" in resumed.stdout


def test_a_batch_that_does_not_split_is_refused_under_torchrun(tiny, tmp_path):
    result = torchrun(tiny_args(tiny, tmp_path / "run", BATCH_SIZE=7, MINI_BATCH_SIZE=7, MICRO_BATCH_SIZE=7))
    assert result.returncode != 0
    assert result.stderr.count("BATCH_SIZE=7 prompts per step cannot be split evenly over 2 processes") == 1
    assert not (tmp_path / "run").exists()
