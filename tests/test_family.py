"""bench/family.py, the benchmark behind the defaults: its tasks load through the real
path and every one of our arms is a valid ppo.py run. Nothing here trains or is timed; the benchmark
itself does that."""
import json
import os
import sys

import torch

from machinery import models
from machinery import rewards
from conftest import check_settings, load_config

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))
import family  # noqa: E402


def test_a_family_task_loads_as_a_users_would_and_its_reward_spreads(tmp_path, monkeypatch):
    monkeypatch.setattr(family, "CACHE", str(tmp_path))
    monkeypatch.setitem(family.TASKS, "tiny",
                        dict(seed=7, hidden=32, layers=1, spread=2.0, lr=1e-3))
    out = family.build("tiny")
    info = json.load(open(os.path.join(out, "task.json")))
    assert abs(info["score_std"] - 2.0) < 1e-3  # the head was scaled to the asked spread
    tok = models.load_tokenizer(os.path.join(out, "policy"), "ACTOR_MODEL")
    assert tok.pad_token_id != tok.eos_token_id  # TRL's PPOTrainer masks every pad-valued token
    prompts = [json.loads(line)["prompt"] for line in open(os.path.join(out, "prompts.jsonl"))]
    assert len(prompts) == family.TRAIN_PROMPTS and all(4 <= len(p.split()) <= 12 for p in prompts)
    assert tok.decode(tok(prompts[0])["input_ids"]) == prompts[0]  # words round-trip: no <unk>
    models.load_model_config("ACTOR_MODEL", os.path.join(out, "policy"))
    scorer = rewards.RewardModel(os.path.join(out, "reward"), torch.device("cpu"), torch.float32)
    scores = scorer(prompts[:64], prompts[64:128])
    assert scores.std() > 0.5  # the reward separates responses
    assert family.build("tiny") == out  # cached: built once


def test_every_arm_of_ours_is_a_valid_run():
    for arm, (trainer, algorithm, extra) in family.ARMS.items():
        if trainer != "ours":
            continue
        args = family.ours_command("aside", algorithm, 0, "/tmp/unused", extra)[2:]
        cfg = load_config([a for a in args
                                     if not a.startswith(("--ACTOR_MODEL", "--CRITIC_MODEL",
                                                          "--REWARD_MODEL", "--DATASET"))])
        check_settings(cfg)
        assert cfg.ALGORITHM == algorithm and cfg.MAX_STEPS == family.STEPS, arm
        assert cfg.BATCH_SIZE * cfg.GROUP_SIZE == 16, arm  # 16 responses per step, as TRL's runs
