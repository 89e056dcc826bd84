"""Bad input is refused before any weights load, with one message that says what to change, exit
code 2, and nothing written."""
import re
import subprocess
import sys

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForSequenceClassification

import ppo
from machinery import rewards
from conftest import ROOT, load_config, make_qwen3_policy, tiny_args, write_prompts


@pytest.fixture(scope="module")
def bad(tiny):
    """Inputs of the wrong kind, made once."""
    d = tiny["dir"] / "bad"
    d.mkdir(exist_ok=True)
    (d / "empty.jsonl").write_text("")
    (d / "malformed.jsonl").write_text('{"prompt": "the movie"}\n{"prompt": \n')
    (d / "no_config").mkdir(exist_ok=True)
    write_prompts(d / "text_key.jsonl", ["a", "b"] * 8, key="text")
    write_prompts(d / "few.jsonl", ["the movie", "the food"])
    write_prompts(d / "blank.jsonl", ["the movie"] * 8 + ["  "])
    config = Qwen3Config.from_pretrained(tiny["policy"])
    config.num_labels = 1
    Qwen3ForSequenceClassification(config).save_pretrained(d / "qwen3_classifier")
    make_qwen3_policy(str(d / "other_vocab"), vocab_size=280)
    files = {k: str(d / f"{k}.jsonl") for k in ("empty", "malformed", "text_key", "few", "blank")}
    folders = {k: str(d / k) for k in ("no_config", "qwen3_classifier", "other_vocab")}
    return {**files, **folders, "missing": str(d / "nope")}


CASES = [  # (overrides, with {name} from the fixtures, expected message)
    ({"ACTOR_MODEL": "{missing}"}, "ACTOR_MODEL='.*nope': no such folder"),
    ({"ACTOR_MODEL": "{no_config}"}, "is a folder without config.json"),
    ({"ACTOR_MODEL": "{reward}"},
     "ACTOR_MODEL=.* is a DebertaV2ForSequenceClassification, not a causal LM"),
    ({"ACTOR_MODEL": "{qwen3_classifier}"}, "is a Qwen3ForSequenceClassification, not a causal LM"),
    ({"CRITIC_MODEL": "{reward}"}, "the critic reads the policy's token ids"),
    ({"CRITIC_MODEL": "{other_vocab}"},
     r"CRITIC_MODEL vocabulary \(\d+\) differs from ACTOR_MODEL's"),
    ({"REWARD_MODEL": "{policy}"},
     "REWARD_MODEL=.* is a Qwen3ForCausalLM, not a sequence classifier"),
    ({"REWARD_MODEL": "{missing}"}, "REWARD_MODEL='.*nope': no such folder"),
    ({"REWARD_MODEL": "no_such_module:score"}, "cannot import no_such_module .ModuleNotFoundError"),
    ({"REWARD_MODEL": "reward_fns:raises"},
     "failed on a test call: reward function raises raised KeyError"),
    ({"REWARD_MODEL": "reward_fns:wrong_count"}, "returned 1 values for 2 responses"),
    ({"DATASET": "{missing}.jsonl"}, "DATASET=.*: no such file"),
    ({"DATASET": "{empty}"}, "is an empty file"),
    ({"DATASET": "{malformed}"}, "could not be read"),
    ({"DATASET": "{text_key}"}, r"has no column PROMPT_KEY='prompt'; its columns are \['text'\]"),
    ({"DATASET": "{few}"}, r"has 2 prompts, fewer than BATCH_SIZE \(8\)"),
    ({"DATASET": "{blank}"}, "1 row.* have an unusable 'prompt' .first at row 8: empty text"),
    ({"MINI_BATCH_SIZE": 3}, r"BATCH_SIZE \(8\) must be divisible by MINI_BATCH_SIZE \(3\)"),
    ({"DEVICE_CRITIC": "cuda:7"}, "DEVICE_CRITIC='cuda:7' but this machine has"),
    ({"CHAT_TEMPLATE": True},
     "CHAT_TEMPLATE=True but the tokenizer of ACTOR_MODEL has no chat template"),
]


@pytest.mark.parametrize("overrides,message", CASES,
                         ids=[str(next(iter(c[0].values()))) for c in CASES])
def test_bad_input_is_refused_with_one_message(tiny, bad, tmp_path, capsys, overrides, message):
    names = {**bad, **tiny}
    overrides = {k: v.format(**names) if isinstance(v, str) else v for k, v in overrides.items()}
    out_dir = tmp_path / "out"
    assert ppo.main(tiny_args(tiny, out_dir, **overrides)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert re.search(message, lines[0]), lines[0]
    assert not out_dir.exists()  # nothing written


def test_command_line_refusal_has_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "ppo.py", "--BATCH_SIZE=6", "--MINI_BATCH_SIZE=4"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: BATCH_SIZE (6) must be divisible by MINI_BATCH_SIZE (4)"
    unknown = subprocess.run([sys.executable, "ppo.py", "--BATCHSIZE=6"], cwd=ROOT,
                             capture_output=True, text=True)
    assert unknown.returncode == 2 and "Did you mean --BATCH_SIZE?" in unknown.stderr
    assert "Traceback" not in out.stderr + unknown.stderr


def test_non_finite_reward_during_training_is_skipped_and_names_the_prompt(tiny, tmp_path):
    cfg = load_config(
        tiny_args(tiny, tmp_path, REWARD_MODEL="reward_fns:nan_after_probe"))
    trainer = ppo.PPOTrainer(cfg)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    metrics, samples = trainer.step()
    assert re.match(r"reward nan for prompt '.+', response '.*'", metrics["skip_reason"])
    assert samples == []
    assert metrics["skipped_updates"] == 1 and trainer.step_count == 1
    # no update happened
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.policy.parameters()))


def test_reward_model_input_format(tiny):
    """The DeBERTa reward model reads (prompt, response) as a text pair in its own vocabulary."""
    rm = rewards.RewardModel(tiny["reward"], torch.device("cpu"), torch.float32)
    scores = rm(["the movie was", "the food"], [" great.", " awful and i hated it."])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    pair = rm.tokenizer("the movie was", " great.")
    assert pair["input_ids"][0] == rm.tokenizer.cls_token_id and pair["token_type_ids"][-1] == 1
    logit = rm.model(**{k: torch.tensor([v]) for k, v in pair.items()}).logits[0, 0].item()
    assert scores[0].item() == pytest.approx(logit, abs=1e-5)
