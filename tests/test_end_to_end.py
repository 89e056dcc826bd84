"""Whole runs on tiny models saved with save_pretrained: a Qwen3 policy and a DeBERTa-v2 reward
model with its own tokenizer. These check that training moves the weights and writes every output in
a reloadable form."""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                          Qwen3Config)
from transformers import Qwen3ForSequenceClassification

import ppo
from conftest import ROOT, load_config, tiny_args

REQUIRED_METRICS = ["step", "reward", "reward_std", "policy_loss", "value_loss", "advantage",
                    "entropy", "kl",
                    "clipfrac", "approx_kl", "response_length", "tokens_per_sec"]


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def max_param_change(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa if k in sb)


def test_tiny_run_trains_and_writes_reloadable_outputs(tiny, tmp_path):
    out = tmp_path / "run"
    assert ppo.main(tiny_args(tiny, out)) == 0

    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2]
    for r in rows:
        missing = [k for k in REQUIRED_METRICS if k not in r]
        assert not missing, missing
        assert all(math.isfinite(v) for v in r.values() if isinstance(v, float)), r
    # step 0: the policy is still the reference
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-4)

    policy = AutoModelForCausalLM.from_pretrained(out / "policy")
    assert max_param_change(policy, AutoModelForCausalLM.from_pretrained(tiny["policy"])) > 1e-4
    critic = AutoModelForSequenceClassification.from_pretrained(out / "critic")
    start = AutoModelForSequenceClassification.from_pretrained(tiny["policy"], num_labels=1)
    assert max_param_change(critic.model, start.model) > 1e-4  # the critic's backbone trained too
    for sub in ("policy", "critic"):
        assert AutoTokenizer.from_pretrained(out / sub).eos_token_id is not None

    for name in ("ppo_metrics.png", "training_metrics.png", "config.json", "ppo.py", "config.py",
                 "machinery/settings.py", "machinery/sampling.py", "tasks/sentiment.py"):
        assert (out / name).stat().st_size > 0, name
    samples = read_jsonl(out / "samples.jsonl")
    assert {s["step"] for s in samples} == {0, 1, 2}
    assert all(isinstance(s["response"], str) for s in samples)
    # every metric a run logs is explained in the README's table
    with open(os.path.join(ROOT, "README.md")) as f:
        table = f.read().split("## Metrics", 1)[1]
    assert not [k for r in rows for k in r if f"`{k}`" not in table]
    assert json.load(open(out / "config.json"))["REWARD_MODEL"] == tiny["reward"]


def test_micro_batching_gives_the_same_update_as_whole_minibatches(tiny, tmp_path):
    """Gradient accumulation divides by the minibatch's token count, so splitting a minibatch
    changes nothing."""
    params = []
    for micro in (4, 1):
        cfg = load_config(tiny_args(tiny, tmp_path / f"m{micro}", MICRO_BATCH_SIZE=micro,
                                              PPO_EPOCHS=1))
        trainer = ppo.PPOTrainer(cfg)
        trainer.step()
        params.append(torch.cat([p.detach().flatten() for p in trainer.policy.parameters()]))
        params.append(torch.cat([p.detach().flatten() for p in trainer.critic.parameters()]))
    torch.testing.assert_close(params[0], params[2], atol=2e-6, rtol=1e-4)
    torch.testing.assert_close(params[1], params[3], atol=2e-6, rtol=1e-4)


def make_chat_variants(tiny):
    """A copy of the policy whose tokenizer has a chat template, and a Qwen3 sequence-classifier
    reward model."""
    d = tiny["dir"]
    chat = d / "qwen3-chat"
    if not chat.exists():
        shutil.copytree(tiny["policy"], chat)
        tok = AutoTokenizer.from_pretrained(chat)
        tok.chat_template = (
            "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>"
            "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
        tok.save_pretrained(chat)
        config = Qwen3Config.from_pretrained(chat)
        config.num_labels = 1
        torch.manual_seed(0)
        Qwen3ForSequenceClassification(config).save_pretrained(d / "qwen3-rm")
        tok.save_pretrained(d / "qwen3-rm")
    return str(chat), str(d / "qwen3-rm")


def test_chat_templates_for_policy_and_a_decoder_reward_model(tiny, tmp_path):
    chat_policy, decoder_rm = make_chat_variants(tiny)
    cfg = load_config(tiny_args(tiny, tmp_path / "chat", ACTOR_MODEL=chat_policy,
                                          CRITIC_MODEL=chat_policy,
                                    REWARD_MODEL=decoder_rm))
    trainer = ppo.PPOTrainer(cfg)
    first = trainer.tokenizer.decode(trainer.prompt_ids[0])
    assert first == f"<user>{trainer.prompts[0]}</user><assistant>"
    metrics, samples = trainer.step()
    # the classifier scored real text
    assert math.isfinite(metrics["reward"]) and metrics["reward_std"] > 0
    no_template = ppo.PPOTrainer(
        load_config(tiny_args(tiny, tmp_path / "plain", ACTOR_MODEL=chat_policy,
                                  CRITIC_MODEL=chat_policy, CHAT_TEMPLATE=False)))
    assert no_template.tokenizer.decode(no_template.prompt_ids[0]) == no_template.prompts[0]


def test_reward_function_and_missing_pad_token(tiny, tmp_path, capsys):
    nopad = tiny["dir"] / "qwen3-nopad"
    if not nopad.exists():
        shutil.copytree(tiny["policy"], nopad)
        tok = AutoTokenizer.from_pretrained(nopad)
        tok.pad_token = None
        tok.save_pretrained(nopad)
    assert AutoTokenizer.from_pretrained(nopad).pad_token is None
    out = tmp_path / "fn"
    assert ppo.main(tiny_args(tiny, out, ACTOR_MODEL=str(nopad), CRITIC_MODEL=str(nopad),
                              REWARD_MODEL="reward_fns:word_count", MAX_STEPS=2,
                              MISSING_EOS_PENALTY=1.0,
                              KL_ESTIMATOR="k3", KL_TARGET=0.01, KL_HORIZON=100)) == 0
    assert "has no pad token; using its EOS token" in capsys.readouterr().out
    rows = read_jsonl(out / "metrics.jsonl")
    samples = read_jsonl(out / "samples.jsonl")
    # the function's own score is logged
    assert samples[0]["reward"] == len(samples[0]["response"].split())
    assert len(rows) == 2
    assert rows[1]["kl_coef"] != rows[0]["kl_coef"]  # the adaptive controller moved beta
    # MISSING_EOS_PENALTY lowers what PPO maximises, not the logged score.
    assert rows[0]["rlhf_reward"] - rows[0]["non_score_reward"] == pytest.approx(
        rows[0]["reward"] - (1 - rows[0]["eos_fraction"]) * 1.0, abs=1e-4)


def test_bf16_mixed_precision_path_runs(tiny, tmp_path):
    """DTYPE=bfloat16 is what a GPU run uses (autocast for the trained models and the float32
    reference, a bf16 reward model); it runs on a CPU too, so this path is exercised without a
    GPU."""
    cfg = load_config(tiny_args(tiny, tmp_path, DTYPE="bfloat16", DEVICE_CRITIC="cpu"))
    trainer = ppo.PPOTrainer(cfg)
    assert trainer.ref_policy.dtype == trainer.policy.dtype == torch.float32
    assert trainer.scorer.parts[0].model.dtype == torch.bfloat16
    metrics, _ = trainer.step()
    assert all(math.isfinite(v) for v in metrics.values())
    # float32 master weights
    assert all(p.dtype == torch.float32 for p in trainer.policy.parameters())


def test_prompts_longer_than_the_limit_keep_their_end(tiny, tmp_path):
    cfg = load_config(tiny_args(tiny, tmp_path / "trunc", MAX_PROMPT_LENGTH=3))
    trainer = ppo.PPOTrainer(cfg)
    full = trainer.tokenizer(trainer.prompts[0])["input_ids"]
    assert trainer.prompt_ids[0] == full[-3:]
    assert sum(trainer.prompts_truncated) == sum(len(trainer.tokenizer(p)["input_ids"]) > 3
                                                 for p in trainer.prompts)
    metrics, _ = trainer.step()
    assert metrics["prompts_truncated"] > 0


def test_default_run_from_the_command_line(tmp_path):
    """`python ppo.py` with the embedded default (built and cached on first use), cut to 2 steps."""
    out = subprocess.run([sys.executable, "ppo.py", "--MAX_STEPS=2", f"--OUTPUT_DIR={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "samples at step 1" in out.stdout + out.stderr
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 2
    assert os.path.exists(tmp_path / "policy" / "config.json")


def test_critic_from_a_reward_model_folder_starts_from_its_head(tiny, tmp_path):
    """CRITIC_MODEL may be a reward model trained from the policy (a *ForSequenceClassification
    folder): the value head then starts from the reward head (N+ detail 8) and is read at every
    position."""
    _, decoder_rm = make_chat_variants(tiny)
    cfg = load_config(tiny_args(tiny, tmp_path, CRITIC_MODEL=decoder_rm))
    trainer = ppo.PPOTrainer(cfg)
    rm = AutoModelForSequenceClassification.from_pretrained(decoder_rm)
    assert torch.equal(trainer.critic.head.weight, rm.score.weight)
    ids = torch.tensor([[5, 6, 7, 8]])
    values = trainer.critic(ids, torch.ones_like(ids), torch.arange(4)[None])
    # the reward model's own score of each prefix equals the critic's value there
    with torch.no_grad():
        for t in range(1, 5):
            assert (values[0, t - 1].item()
                    == pytest.approx(rm(input_ids=ids[:, :t]).logits[0, 0].item(), abs=1e-5))
    metrics, _ = trainer.step()
    assert math.isfinite(metrics["value_loss"])
