"""Real-task features: rewards that see the dataset, several weighted rewards, chat prompts,
evaluation during training, trackers and config files. Most checks run before any model loads;
one tiny run exercises them all together."""
import glob
import json
import math
import os
import re
import shutil
import sys

import pytest
import torch

import ppo
from machinery.script import Refusal
from machinery import sampling
from machinery import models
from machinery.data import prompt_text
from machinery import data
from machinery import rewards as scoring
from machinery import settings
from tasks import rewards
from conftest import ROOT, check_settings, load_config, tiny_args

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def with_chat_template(src, dst):
    """A copy of a save_pretrained folder whose tokenizer has a chat template."""
    from transformers import AutoTokenizer
    shutil.copytree(src, dst)
    tok = AutoTokenizer.from_pretrained(dst)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(dst)
    return str(dst)


@pytest.fixture(scope="module")
def chat(tiny, tmp_path_factory):
    """The tiny policy with a chat template, a Qwen3 reward model with one, and a dataset of
    conversations with an answer column; EVAL_DATASET the same kind."""
    from transformers import AutoConfig, AutoModelForSequenceClassification
    d = tmp_path_factory.mktemp("chat")
    policy = with_chat_template(tiny["policy"], d / "policy")
    config = AutoConfig.from_pretrained(policy, num_labels=1)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(d / "rm")
    rm = with_chat_template(policy, d / "rm-tok")  # tokenizer files beside the classifier's weights
    for name in os.listdir(d / "rm"):
        shutil.copy(d / "rm" / name, d / "rm-tok" / name)
    rows = [{"prompt": [{"role": "user", "content": f"the movie {v}"}], "answer": str(i % 3)}
            for i, v in enumerate(["was", "is", "felt", "seemed"] * 4)]
    rows[1]["prompt"] = [{"role": "system", "content": "be kind"},
                         {"role": "user", "content": "my day was"},
                         {"role": "assistant", "content": " fine."},
                         {"role": "user", "content": "and then"}]
    for name, part in (("train.jsonl", rows), ("eval.jsonl", rows[:6])):
        with open(d / name, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
    return {"policy": policy, "rm": rm, "train": str(d / "train.jsonl"),
            "eval": str(d / "eval.jsonl"), "dir": d}


# ---- rewards that see the dataset ----------------------------------------------------------------
def two(prompts, responses):
    return [1.0] * len(responses)


def named(prompts, responses, answer, level=None):
    return [float(a) + (level[i] if level else 0) for i, a in enumerate(answer)]


def everything(prompts, responses, **columns):
    return [float(len(columns))] * len(responses)


def test_a_reward_function_receives_the_columns_it_names_and_old_ones_keep_working():
    columns = {"answer": ["1", "2"], "level": [10, 20], "source": ["a", "b"]}
    p, r = ["x", "y"], ["1", "3"]
    assert scoring.call_reward_function(two, p, r, columns).tolist() == [1.0, 1.0]
    assert scoring.call_reward_function(named, p, r, columns).tolist() == [11.0, 22.0]
    assert scoring.call_reward_function(everything, p, r, columns).tolist() == [3.0, 3.0]
    assert scoring.reward_arguments(named)[2] == {"answer"}  # level has a default
    assert scoring.call_reward_function(rewards.exact_match, p, r, columns).tolist() == [1.0, 0.0]


def test_a_function_that_needs_a_column_the_dataset_lacks_is_refused_naming_both(tiny):
    with pytest.raises(Refusal,
                       match=r"requires 'answer', which DATASET has no column for \(its "
                                                    r"other columns: \['level'\]\)"):
        scoring.check_scorer(f"{__name__}:named", ["a", "b"], {"level": [1, 2]})
    with pytest.raises(Refusal, match="which EVAL_DATASET has no column"):
        scoring.check_scorer(f"{__name__}:named", ["a"], {"answer": ["1"]}, eval_columns={})


@pytest.mark.parametrize("response,answer,score", [
    ("The total is 1,234.", "work... #### 1234", 1.0), ("-3", "#### -3", 1.0),
    ("12 then 13", "#### 12", 0.0),
    ("no number", "#### 5", 0.0), (
        "2.50", "#### 2.5", 1.0), ("7\n", "step 3 + 4 = 7\n#### 7", 1.0)])
def test_gsm8k_reward_reads_the_last_number_against_the_answer_after_the_hashes(
        response, answer, score):
    assert rewards.gsm8k_answer(["q"], [response], [answer]) == [score]


def test_exact_match_ignores_surrounding_whitespace_only():
    assert (rewards.exact_match(["1+1="] * 4, ["2", " 2 ", "02", "2."], ["2"] * 4)
            == [1.0, 1.0, 0.0, 0.0])


# ---- several rewards with weights ----------------------------------------------------------------
def test_several_scorers_sum_with_their_weights_and_keep_their_own_scores():
    scorer = scoring.Scorer(["reward_fns:word_count", f"{__name__}:named", "reward_fns:word_count"],
                           [1.0, -0.5, 2.0],
                        "cpu", torch.float32)
    assert scorer.names == ["word_count", "named", "word_count_2"]
    total, parts = scorer(["p", "q"], ["a b c", "d"], {"answer": ["4", "6"]})
    assert parts.tolist() == [[3.0, 4.0, 3.0], [1.0, 6.0, 1.0]]
    assert total.tolist() == [3.0 - 2.0 + 6.0, 1.0 - 3.0 + 2.0]


def test_reward_names_and_weights_are_read_from_the_command_line_and_checked():
    cfg = load_config(["--REWARD_MODEL=a/b,mod:fn", "--REWARD_WEIGHTS=[1, 0.5]"])
    assert cfg.REWARD_MODEL == ["a/b", "mod:fn"] and cfg.REWARD_WEIGHTS == [1.0, 0.5]
    # one scorer: a name
    assert load_config(["--REWARD_MODEL=['mod:fn']"]).REWARD_MODEL == "mod:fn"
    with pytest.raises(Refusal,
                       match=r"REWARD_WEIGHTS has 1 weight\(s\) for 2 scorer\(s\)"):
        check_settings(
            load_config(["--REWARD_MODEL=a/b,mod:fn", "--REWARD_WEIGHTS=2"]))
    with pytest.raises(Refusal, match="REWARD_WEIGHTS must be a list of numbers"):
        load_config(["--REWARD_WEIGHTS=heavy"])
    assert (scoring.reward_metric_names(["x/rm/", "org/rm", "m:std", "m:f"])
            == ["rm", "rm_2", "std_score", "f"])


# ---- chat prompts --------------------------------------------------------------------------------
def test_conversations_and_the_system_prompt_go_through_the_chat_template(chat):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(chat["policy"])
    prompts = ["hello", [{"role": "system", "content": "own"}, {"role": "user", "content": "hi"}]]
    ids, _ = data.tokenize_prompts(tok, prompts, "auto", 500, system_prompt="sys")
    assert tok.decode(ids[0]) == "<|system|>sys\n<|user|>hello\n<|assistant|>"
    # its own system message stays
    assert tok.decode(ids[1]) == "<|system|>own\n<|user|>hi\n<|assistant|>"


def test_without_a_chat_template_conversations_and_a_system_prompt_are_refused(tiny):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny["policy"])
    with pytest.raises(Refusal,
                       match="SYSTEM_PROMPT is set, but ACTOR_MODEL's tokenizer has no chat "
                       "template"):
        data.tokenize_prompts(tok, ["a"], "auto", 64, system_prompt="be brief")
    with pytest.raises(Refusal, match="the prompts are conversations"):
        data.tokenize_prompts(tok, [[{"role": "user", "content": "a"}]], "auto", 64)


@pytest.mark.parametrize("prompt,problem", [
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
     "ends with a 'assistant' message"),
    ([{"role": "robot", "content": "a"}], "is not a {'role'"), ([], "neither text nor a list"),
    ("  ", "empty text")])
def test_unusable_prompts_are_refused_with_the_row(tmp_path, prompt, problem):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt": "fine"}) + "\n" + json.dumps({"prompt": prompt}) + "\n")
    cfg = load_config([f"--DATASET={path}"])
    with pytest.raises(Refusal, match=r"first at row 1: (.*)" + re.escape(problem)):
        data.load_prompts(cfg)


def test_a_reward_model_with_a_chat_template_reads_the_whole_conversation(chat, tiny):
    rm = scoring.RewardModel(chat["rm"], "cpu", torch.float32)
    conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                    {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]
    ids = rm.encode([conversation], [" R"])["input_ids"][0]
    assert (rm.tokenizer.decode(ids)
            == "<|system|>S\n<|user|>U1\n<|assistant|>A1\n<|user|>U2\n<|assistant|> R\n")
    rm.max_length = len(ids) - 3  # too long by 3 tokens: the oldest messages go first
    short = rm.fit(conversation, " R", len(ids))
    assert short[-1] == conversation[-1] and len(short) < len(conversation)
    assert len(rm.encode([short], [" R"])["input_ids"][0]) <= rm.max_length
    # DeBERTa: a text pair, no template
    pair = scoring.RewardModel(tiny["reward"], "cpu", torch.float32)
    assert prompt_text(conversation) == "U1\n\nA1\n\nU2"
    assert (pair.encode([conversation], [" R"])["input_ids"]
            == pair.encode(["U1\n\nA1\n\nU2"], [" R"])["input_ids"])


# ---- config files --------------------------------------------------------------------------------
def test_a_config_file_applies_over_config_py_and_the_command_line_over_it(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "import math\nBATCH_SIZE = 64\nLEARNING_RATE = 1e-5 * math.sqrt(4)\n_helper = 3\n")
    cfg = load_config([str(path), "--BATCH_SIZE=16"])
    assert cfg.BATCH_SIZE == 16 and cfg.LEARNING_RATE == pytest.approx(2e-5)
    assert load_config([str(path)]).BATCH_SIZE == 64


@pytest.mark.parametrize("text,message", [
    ("BATCH_SIZ = 4\n", r"unknown setting BATCH_SIZ in .*bad.py. Did you mean BATCH_SIZE in"),
    ("BATCH_SIZE = (\n", r"is not valid Python \(line 1"),
    ("BATCH_SIZE = 1 / 0\n", "raised ZeroDivisionError"),
    ("BATCH_SIZE = 'many'\n", "BATCH_SIZE must be an integer >= 1, got 'many'"),
])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, capsys, text, message):
    path = tmp_path / "bad.py"
    path.write_text(text)
    assert ppo.main([str(path), f"--OUTPUT_DIR={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "run").exists()
    assert ppo.main([str(tmp_path / "missing.py")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_shipped_config_parses_and_its_settings_hold_together(path):
    cfg = load_config([path])
    check_settings(cfg)
    assert cfg.OUTPUT_DIR.startswith("runs/")


# the configs that name a hub model (the others name folders the tasks build under .cache/)
HUB_CONFIGS = [p for p in CONFIGS if 'ACTOR_MODEL = "' in open(p).read()]


@pytest.mark.parametrize("path", HUB_CONFIGS, ids=os.path.basename)
def test_hub_configs_are_refused_offline_at_the_first_hub_name_in_one_line(
        path, tmp_path, monkeypatch, capsys):
    """What can be checked here: everything up to the network. Offline and with an empty hub cache,
    the refusal names the first setting that needs the hub and writes nothing."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert ppo.main([path, f"--OUTPUT_DIR={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("DATASET=" in err or "ACTOR_MODEL=" in err), err
    assert not (tmp_path / "run").exists()


def test_the_seed_config_runs_with_local_stand_ins_for_its_hub_models(tiny, chat, tmp_path):
    """configs/qwen3_0.6b_deberta.py as it is, with only its hub names and sizes replaced on the
    command line: the tiny Qwen3 with a chat template for Qwen3-0.6B, the tiny DeBERTa-v2 for the
    OpenAssistant reward model, and a local conversational dataset for UltraFeedback."""
    out = tmp_path / "seed"
    args = [os.path.join(ROOT, "configs", "qwen3_0.6b_deberta.py"),
            f"--ACTOR_MODEL={chat['policy']}",
            f"--CRITIC_MODEL={chat['policy']}", f"--REWARD_MODEL={tiny['reward']}",
            f"--DATASET={chat['train']}",
            f"--EVAL_DATASET={chat['eval']}", f"--OUTPUT_DIR={out}", "--BATCH_SIZE=8",
            "--MINI_BATCH_SIZE=8",
            "--MICRO_BATCH_SIZE=4", "--MAX_NEW_TOKENS=6", "--MAX_STEPS=2", "--PLOT_EVERY=100"]
    assert ppo.main(args) == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "eval_reward" in r] == [0, 2]
    settings = json.load(open(out / "config.json"))
    # the file's own settings
    assert settings["DTYPE"] == "bfloat16" and settings["MISSING_EOS_PENALTY"] == 1.0
    assert (out / "configs" / "qwen3_0.6b_deberta.py").exists()
    assert glob.glob(str(out / "tensorboard" / "seed" / "*"))


# ---- settings for evaluation and trackers --------------------------------------------------------
def test_evaluation_and_tracker_settings_are_checked_before_any_work(monkeypatch):
    with pytest.raises(Refusal,
                       match="EVAL_EVERY=5 evaluates on held-out prompts, but EVAL_DATASET is "
                             "None"):
        check_settings(load_config(["--EVAL_EVERY=5"]))
    real = settings.importlib.util.find_spec
    monkeypatch.setattr(settings.importlib.util, "find_spec",
                        lambda name: None if name == "wandb" else real(name))
    with pytest.raises(Refusal,
                       match="REPORT_TO='wandb' needs the wandb package: pip install wandb"):
        check_settings(load_config(["--REPORT_TO=wandb"]))
    with pytest.raises(Refusal,
                       match="REPORT_TO must be one of 'none', 'tensorboard', 'wandb', 'trackio'"):
        load_config(["--REPORT_TO=mlflow"])


def test_evaluation_draws_fixed_numbers_per_row_whatever_the_batching(tiny):
    """The same policy evaluated twice, in other batch sizes, or split into two processes' row
    ranges, gives the same responses and scores row for row: successive evaluations differ only by
    the policy."""
    import evaluate
    cfg = load_config([f"--EVAL_DATASET={tiny['prompts']}", "--EVAL_MAX_PROMPTS=12",
                                 "--EVAL_SAMPLES=3",
                           "--MAX_NEW_TOKENS=6"])
    prompts, columns = data.load_prompts(cfg, held_out=True)
    assert len(prompts) == 12
    scorer = scoring.Scorer("reward_fns:word_count", None, "cpu", torch.float32)
    tok = models.load_tokenizer(tiny["policy"], "policy")
    model = models.load_causal_lm(tiny["policy"], "cpu", torch.float32)
    ids, _ = data.tokenize_prompts(tok, prompts, "auto", 64)
    args = (model, tok, sampling.eos_token_ids(tok, tiny["policy"]), ids, prompts, columns, scorer,
            cfg, "cpu", torch.float32)
    whole = evaluate.sample_and_score(*args, batch_size=64)
    n = len(prompts) * 3
    halves = [evaluate.sample_and_score(*args, rows=rows, batch_size=5)
              for rows in (range(0, 19), range(19, n))]
    torch.manual_seed(123)  # the global generator plays no part
    again = evaluate.sample_and_score(*args, batch_size=7)
    responses = [e["response"] for e in whole[3]]
    assert (responses
            == [e["response"] for h in halves for e in h[3]] == [e["response"] for e in again[3]])
    assert torch.equal(whole[0], torch.cat([halves[0][0], halves[1][0]]))
    assert torch.equal(whole[2], again[2])
    assert len(set(responses)) > n // 3  # the rows are not all alike


# ---- everything at once, in one tiny run ---------------------------------------------------------
def test_a_run_with_chat_prompts_two_weighted_rewards_evaluation_and_tensorboard(
        tiny, chat, tmp_path):
    """A config file, conversations with a system prompt, a reward model with a chat template plus a
    function of the answer column (weights 1 and 0.5), evaluation every 2 steps and TensorBoard:
    every promised output is there, and evaluation does not change training (the same run without it
    trains identically)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    config = tmp_path / "exp.py"
    config.write_text(f"ACTOR_MODEL = {chat['policy']!r}\nCRITIC_MODEL = ACTOR_MODEL\nREWARD_MODEL "
                      f"= [{chat['rm']!r}, 'test_real_tasks:named']\nREWARD_WEIGHTS = [1.0, "
                      f"0.5]\nDATASET = {chat['train']!r}\nSYSTEM_PROMPT = 'answer briefly'\n")
    base = tiny_args(tiny, tmp_path / "plain", MAX_STEPS=3, PLOT_EVERY=100)
    base = [a for a in base if not a.startswith(("--ACTOR_MODEL", "--CRITIC_MODEL",
                                                 "--REWARD_MODEL", "--DATASET"))]
    watched = [str(config), *[a for a in base if not a.startswith("--OUTPUT_DIR=")],
               f"--OUTPUT_DIR={tmp_path / 'run'}", f"--EVAL_DATASET={chat['eval']}",
               "--EVAL_EVERY=2", "--EVAL_SAMPLES=2", "--REPORT_TO=tensorboard", "--RUN_NAME=exp1"]
    assert ppo.main(watched) == 0
    assert ppo.main([str(config), *base]) == 0

    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    # three steps, then the final policy's evaluation
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert [r["step"] for r in rows if "eval_reward" in r] == [0, 2, 3] and "reward" not in rows[-1]
    for r in rows[:3]:
        assert r["reward"] == pytest.approx(r["reward_rm-tok"] + 0.5 * r["reward_named"], abs=1e-5)
    final = rows[-1]
    summed = final["eval_reward_rm-tok"] + 0.5 * final["eval_reward_named"]
    assert final["eval_reward"] == pytest.approx(summed, abs=1e-5)
    assert 0 < final["eval_reward_se"] and math.isfinite(final["eval_response_length"])
    plain = read_jsonl(tmp_path / "plain" / "metrics.jsonl")
    timing = ("elapsed", "step_time", "tokens_per_sec")
    for a, b in zip(rows[:3], plain):
        assert {k: v for k, v in a.items() if not k.startswith(("eval_", "time_"))
                and k not in timing} == \
               {k: v for k, v in b.items() if not k.startswith(("eval_", "time_"))
                and k not in timing}

    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert samples[0]["prompt"][0] == {"role": "system", "content": "answer briefly"}
    assert (tmp_path / "run" / "configs" / "exp.py").read_text() == config.read_text()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "exp1"),
                              size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("eval_reward")] == [0, 2, 3]
    assert ([e.value for e in events.Scalars("reward_named")]
            == pytest.approx([r["reward_named"] for r in rows[:3]]))
    assert {"samples/text_summary", "config/text_summary"} <= set(events.Tags()["tensors"])
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"SYSTEM_PROMPT": "answer briefly"' in config_text


class FakeTracker:
    """The part of the wandb / trackio API that plotting.Tracker uses, recording the calls."""
    calls = []

    @classmethod
    def init(cls, **kwargs):
        cls.calls.append(("init", kwargs))

    @classmethod
    def log(cls, data, step=None):
        cls.calls.append(("log", data, step))

    class Table:
        def __init__(self, columns, data):
            self.columns, self.data = columns, data

    @classmethod
    def alert(cls, title, text):
        cls.calls.append(("alert", title, text))

    @classmethod
    def finish(cls):
        cls.calls.append(("finish",))


@pytest.mark.parametrize("kind", ["wandb", "trackio"])
def test_wandb_and_trackio_receive_flat_metrics_samples_and_settings(kind, tmp_path, monkeypatch):
    """Both share one API; this checks the calls plotting.Tracker makes (the packages' own offline
    runs are in test_real_trackers_offline, where they are installed)."""
    import plotting
    monkeypatch.setitem(sys.modules, kind, FakeTracker)
    FakeTracker.calls = []
    tracker = plotting.Tracker(kind, str(tmp_path), "run-a", {"SEED": 1})
    tracker.log({"step": 4, "reward": 0.5, "eval_reward": 0.25, "flag": True}, 4)
    tracker.log_samples([{"prompt": [{"role": "user", "content": "x"}], "response": "y",
                          "reward": 1.0}], 4)
    tracker.log_text("health", "health: update too large at step 4: ...", 4)
    tracker.close()
    init, log, table, alert, finish = FakeTracker.calls
    assert alert == ("alert", "health at step 4", "health: update too large at step 4: ...")
    assert init[1]["name"] == "run-a"
    assert init[1]["config"] == {"SEED": 1}
    assert init[1]["project"] == "ppo"
    assert log == ("log", {"reward": 0.5, "eval_reward": 0.25}, 4)
    assert table[1]["samples"].columns == ["prompt", "response", "reward"] and table[2] == 4
    assert finish == ("finish",)


def test_tensorboard_gets_a_health_alarm_as_text(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    import plotting
    tracker = plotting.Tracker("tensorboard", str(tmp_path), "run-a", {"SEED": 1})
    tracker.log_text("health", "health: no learning signal at step 7: ...", 7)
    tracker.close()
    events = EventAccumulator(str(tmp_path / "tensorboard" / "run-a"), size_guidance={"tensors": 0})
    events.Reload()
    (event,) = events.Tensors("health/text_summary")
    assert event.step == 7
    assert event.tensor_proto.string_val[0].decode().startswith("health: no learning signal")


@pytest.mark.parametrize("kind", ["wandb", "trackio"])
def test_real_trackers_offline(kind, tmp_path, monkeypatch):
    """Where the package is installed (not in requirements.txt): its own offline mode, end to
    end."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))  # read when trackio is imported
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    module = pytest.importorskip(kind)
    import plotting
    tracker = plotting.Tracker(kind, str(tmp_path), "offline-run", {"SEED": 1})
    for step in range(3):
        tracker.log({"step": step, "reward": step / 2}, step)
    tracker.log_samples([{"prompt": "p", "response": "r", "reward": 0.5}], 2)
    tracker.close()
    if kind == "wandb":  # the offline run's log, for `wandb sync`
        assert glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    else:  # trackio keeps a local SQLite database per project: read the metrics back
        import sqlite3
        # tmp_path/trackio, unless trackio was imported before this test
        folder = module.utils.TRACKIO_DIR
        with sqlite3.connect(os.path.join(folder, "ppo.db")) as db:
            rows = db.execute(
                "select step, metrics from metrics where run_name = 'offline-run'").fetchall()
        logged = {step: json.loads(m)["reward"] for step, m in rows if "reward" in json.loads(m)}
        assert logged == {0: 0.0, 1: 0.5, 2: 1.0}


@pytest.mark.parametrize("overrides,message", [
    ({"REWARD_WEIGHTS": "[1, nan]"}, "REWARD_WEIGHTS must be a list of numbers"),
    ({"EVAL_DATASET": "nope.jsonl"}, "EVAL_DATASET='nope.jsonl': no such file or folder"),
    ({"EVAL_DATASET": "{answers}"},
     r"EVAL_DATASET=.* has no column PROMPT_KEY='prompt'; its columns are \['answer'\]"),
    ({"SYSTEM_PROMPT": "be brief"},
     "SYSTEM_PROMPT is set, but ACTOR_MODEL's tokenizer has no chat template"),
    ({"REWARD_MODEL": "{reward},reward_fns:nope"},
     "REWARD_MODEL='reward_fns:nope': module reward_fns"),
    ({"REWARD_MODEL": "{reward},{reward}", "REWARD_WEIGHTS": "1"},
     r"REWARD_WEIGHTS has 1 weight\(s\) for 2"),
])
def test_bad_issue_13_input_is_one_line_before_any_weights_load(
        tiny, tmp_path, capsys, overrides, message):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"answer": "1"}) + "\n")
    overrides = {k: v.format(answers=answers, reward=tiny["reward"]) for k, v in overrides.items()}
    assert ppo.main(tiny_args(tiny, tmp_path / "run", **overrides)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "run").exists()
