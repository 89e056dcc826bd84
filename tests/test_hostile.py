"""Hostile-but-ordinary input, class by class: each case asserts the exit code, one
message and no traceback, and that the files written before it are intact. Most are refused before
any model loads and run in-process in well under a second; the ones that need a real process
(signals, locks, a full disk) run one."""
import errno
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import ppo
from machinery.script import Refusal
from machinery import models
from machinery import checkpoints
from machinery import data
from machinery import rewards
from machinery import run_files, settings
from conftest import ROOT, load_config, tiny_args

TESTS = os.path.dirname(os.path.abspath(__file__))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, ROOT])}
# the discard port on this machine: refused at once, as a hub with no network
UNREACHABLE = "http://127.0.0.1:9"


def args_for(tiny, out, **overrides):
    settings = dict(REWARD_MODEL="reward_fns:word_count", MAX_STEPS=2, SAVE_EVERY=1, PLOT_EVERY=100)
    return tiny_args(tiny, out, **{**settings, **overrides})


def snapshot(folder):
    """{relative path: sha1} of every file under folder ({} if it does not exist), but the run lock,
    which holds the process id of whoever last took it."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in set(files) - {run_files.RunLock.NAME}:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha1(f.read()).hexdigest()
    return found


def assert_one_message(output, code, expected):
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output[-3000:]
    assert expected in lines[0] or __import__("re").search(expected, lines[0]), lines[0]


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """A finished 2-step run with a checkpoint after each step, to copy and damage."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert ppo.main(args_for(tiny, out)) == 0
    return out


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """Reward-function modules that cannot be imported, in a folder put on sys.path by the cases
    that use them."""
    d = tmp_path_factory.mktemp("modules")
    (d / "bad_syntax.py").write_text("def score(prompts, responses)\n    return [0.0]\n")
    (d / "raises_at_import.py").write_text("raise RuntimeError('no GPU for the judge')\n")
    (d / "exits_at_import.py").write_text("import sys\nsys.exit(4)\n")
    return d


@pytest.fixture(scope="module")
def variants(tiny, tmp_path_factory):
    """Models that are not quite what they claim: a 2-label sentiment classifier as reward model, a
    2-label classifier of the policy's kind (a critic start), a policy folder without its tokenizer
    files."""
    from transformers import (AutoTokenizer, DebertaV2ForSequenceClassification,
                              Qwen3ForSequenceClassification)
    from transformers import AutoConfig
    d = tmp_path_factory.mktemp("variants")
    labels = dict(num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                  label2id={"NEGATIVE": 0, "POSITIVE": 1})
    two = AutoConfig.from_pretrained(tiny["reward"], **labels)
    torch.manual_seed(0)
    DebertaV2ForSequenceClassification(two).save_pretrained(d / "sentiment")
    AutoTokenizer.from_pretrained(tiny["reward"]).save_pretrained(d / "sentiment")
    config = AutoConfig.from_pretrained(tiny["policy"], **labels)
    Qwen3ForSequenceClassification(config).save_pretrained(d / "classifier")
    AutoTokenizer.from_pretrained(tiny["policy"]).save_pretrained(d / "classifier")
    shutil.copytree(tiny["policy"], d / "no_tokenizer",
                    ignore=lambda folder,
                    names: [n for n in names if n not in ("config.json", "model.safetensors")])
    # the policy under a chat template that refuses a system turn and roles out of turn, as Gemma's
    # and Mistral's do
    shutil.copytree(tiny["policy"], d / "strict_template")
    tok = AutoTokenizer.from_pretrained(d / "strict_template")
    tok.chat_template = STRICT_TEMPLATE
    tok.save_pretrained(d / "strict_template")
    return {"sentiment": str(d / "sentiment"), "classifier": str(d / "classifier"),
            "no_tokenizer": str(d / "no_tokenizer"),
            "strict_template": str(d / "strict_template"), "dir": d}


STRICT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")


# ---- the cases -----------------------------------------------------------------------------------
# Each prepare(c) sets up what the case needs (c.out is the OUTPUT_DIR, c.finished a finished run to
# copy) and returns the setting overrides; the case then expects (exit code, text of the one error
# line).
def offline(c):
    c.monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    c.monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)


def unreachable(c):
    c.monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", UNREACHABLE)


def copy_run(c):
    shutil.copytree(c.finished, c.out)


def damage(path, how):
    def prepare(c):
        copy_run(c)
        target = os.path.join(c.out, path)
        if how == "truncate":
            with open(target, "r+b") as f:
                f.truncate(os.path.getsize(target) // 2)
        elif how == "garbage":
            with open(target, "wb") as f:
                f.write(os.urandom(4096))
        elif how == "remove":
            shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
        return {"RESUME": True, "MAX_STEPS": 3}
    return prepare


def pickled_code(c):
    """A trainer_state.pt whose unpickling would run code: it must not run."""
    copy_run(c)
    marker = c.tmp / "ran"
    state = {"counters": {}, "rng": {}, "optimizers": [], "schedulers": [],
             "payload": Payload(str(marker))}
    torch.save(state, os.path.join(c.out, "checkpoint", "trainer_state.pt"))
    c.after = lambda: not marker.exists()
    return {"RESUME": True, "MAX_STEPS": 3}


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def numpy_state(c):
    """What the previous version wrote: NumPy's random state as a pickled ndarray."""
    copy_run(c)
    path = os.path.join(c.out, "checkpoint", "trainer_state.pt")
    state = torch.load(path, weights_only=True)
    import numpy as np
    state["rng"]["numpy"] = np.random.get_state()
    torch.save(state, path)
    return {"RESUME": True, "MAX_STEPS": 3}


def dead_run(c):
    """A run that died before its first checkpoint: logs, no checkpoint."""
    c.out.mkdir()
    (c.out / "metrics.jsonl").write_text(json.dumps({"step": 0, "reward": 1.0}) + "\n")
    (c.out / "run.lock").write_text("999999 elsewhere\n")
    return {}


def with_modules(c):
    c.monkeypatch.syspath_prepend(str(c.modules))


def edited_config(name, value):
    def prepare(c):
        import config
        c.monkeypatch.setattr(config, name, value)
        return {}
    return prepare


def chain(*steps, **overrides):
    def prepare(c):
        for step in steps:
            step(c)
        return overrides
    return prepare


class C:  # one case
    def __init__(self, cls, name, prepare, code, message, **overrides):
        self.cls, self.name, self.prepare, self.code, self.message, self.overrides = (
            cls, name, prepare, code, message, overrides)


QWEN, DEBERTA = "Qwen/Qwen3-0.6B", "OpenAssistant/reward-model-deberta-v3-large-v2"
CASES = [
    # 1. hub ids are hub ids: not local, so the hub; unreachable or offline -> one line naming
    #    setting and id
    C(1, "seed-actor-offline", offline, 2,
      f"ACTOR_MODEL='{QWEN}' is neither a local folder nor in the hub cache, "
      f"and HF_HUB_OFFLINE is set", ACTOR_MODEL=QWEN, CRITIC_MODEL=QWEN),
    C(1, "seed-reward-unreachable", unreachable, 2,
      f"REWARD_MODEL='{DEBERTA}' is neither a local folder nor reachable on the hub "
      f"({UNREACHABLE}", REWARD_MODEL=DEBERTA),
    C(1, "bare-name-offline", offline, 2,
      "ACTOR_MODEL='gpt2' is neither a local folder nor in the hub cache", ACTOR_MODEL="gpt2"),
    C(1, "critic-unreachable", unreachable, 2,
      "CRITIC_MODEL='someone/critic' is neither a local folder nor "
      "reachable", CRITIC_MODEL="someone/critic"),
    C(1, "dataset-unreachable", unreachable, 2,
      "DATASET='someone/prompts' is neither a local file or folder nor reachable on the "
      "hub", DATASET="someone/prompts"),
    C(1, "dataset-offline", offline, 2,
      "DATASET='someone/prompts' is neither a local file or folder nor loadable "
      "from the hub", DATASET="someone/prompts"),
    C(1, "a-path-is-not-sent-to-the-hub", unreachable, 2,
      "ACTOR_MODEL='./models/qwen': no such folder", ACTOR_MODEL="./models/qwen"),
    C(1, "deep-path", unreachable, 2, "REWARD_MODEL='runs/rm/final': no such folder",
      REWARD_MODEL="runs/rm/final"),
    # 2. typed settings: wrong type or out of range -> one line naming the setting and what it
    #    accepts
    C(2, "overwrite-false", copy_run, 2, "already holds a run", OVERWRITE="false"),
    C(2, "overwrite-FALSE", copy_run, 2, "already holds a run", OVERWRITE="FALSE"),
    C(2, "lr-abc", None, 2, "LEARNING_RATE must be a number >= 0 or None, got 'abc'",
      LEARNING_RATE="abc"),
    C(2, "entropy-abc", None, 2, "ENTROPY_COEF must be a number, got 'abc'", ENTROPY_COEF="abc"),
    C(2, "num-samples-abc", None, 2, "NUM_SAMPLES must be an integer >= 0, got 'abc'",
      NUM_SAMPLES="abc"),
    C(2, "grad-norm-negative", None, 2, "MAX_GRAD_NORM must be a number > 0 or None, got -1.0",
      MAX_GRAD_NORM=-1),
    C(2, "kl-horizon-0", None, 2, "KL_HORIZON must be an integer >= 1, got 0", KL_HORIZON=0),
    C(2, "seed-negative", None, 2, "SEED must be an integer in [0, 4294967295], got -1", SEED=-1),
    C(2, "lr-negative", None, 2, "LEARNING_RATE must be a number >= 0 or None, got -1e-05",
      LEARNING_RATE=-1e-5),
    C(2, "temperature-nan", None, 2, "TEMPERATURE must be a number > 0, got nan",
      TEMPERATURE="nan"),
    C(2, "batch-size-float", None, 2, "BATCH_SIZE must be an integer >= 1, got '8.5'",
      BATCH_SIZE=8.5),
    C(2, "debug-maybe", None, 2, "DEBUG must be True or False, got 'maybe'", DEBUG="maybe"),
    C(2, "algorithm-case", None, 2,
      "ALGORITHM must be one of 'ppo', 'grpo', 'dr_grpo', 'dapo', 'reinforce', 'gspo', 'cispo', "
      "got 'PPO'",
      ALGORITHM="PPO"),
    C(2, "lora-targets-missing", None, 2,
      "LORA_TARGET_MODULES names ['query_key_value'], which ACTOR_MODEL=",
      LORA_RANK=4, LORA_TARGET_MODULES="query_key_value"),
    C(2, "config-py-edited", edited_config("GAMMA", "1.0"), 2,
      "GAMMA must be a number in [0, 1], got '1.0'"),
    C(2, "chat-template-1", None, 2, "CHAT_TEMPLATE must be one of 'auto', True, False, got '1'",
      CHAT_TEMPLATE=1),
    # 3. one run per folder; a run that died before its first checkpoint is not a dead end
    C(3, "dead-run-restarted", dead_run, 2,
      "holds the logs of a run that stopped before its first checkpoint, so "
      "it cannot be resumed: replace it with --OVERWRITE=True"),
    C(3, "dead-run-resumed", dead_run, 2,
      "stopped before its first checkpoint (one is written every SAVE_EVERY "
      "steps), so there is nothing to resume: start it again with --OVERWRITE=True", RESUME=True),
    C(3, "resume-and-overwrite", copy_run, 2,
      "RESUME=True and OVERWRITE=True contradict each other", RESUME=True, OVERWRITE=True),
    C(3, "resume-changed-settings", copy_run, 2, "LEARNING_RATE 0.0003 -> 0.001", RESUME=True,
      MAX_STEPS=3, LEARNING_RATE=1e-3),
    # 4. the output folder, checked before loading
    C(4, "output-is-a-file", lambda c: c.out.write_text("notes\n") and {}, 2,
      "is a file, not a folder"),
    C(4, "output-under-a-file", None, 2, "which is a file, not a folder",
      OUTPUT_DIR="{tiny_prompts}/run"),
    C(4, "output-name-too-long", None, 2, "cannot be a folder: File name too long",
      OUTPUT_DIR="{tmp}/" + "x" * 300),
    C(4, "output-is-the-code", None, 2, "is the code's folder", OUTPUT_DIR=ROOT),
    C(4, "output-is-the-actor", None, 2, "is ACTOR_MODEL itself", OUTPUT_DIR="{tiny_policy}"),
    # 5. damaged checkpoints, found before models load; the spelling of OUTPUT_DIR is no setting
    C(5, "state-truncated", damage("checkpoint/trainer_state.pt", "truncate"), 2,
      "trainer_state.pt is damaged"),
    C(5, "state-garbage", damage("checkpoint/trainer_state.pt", "garbage"), 2,
      "trainer_state.pt is damaged"),
    C(5, "weights-truncated", damage("checkpoint/policy/model.safetensors", "truncate"), 2,
      "model.safetensors is truncated"),
    C(5, "weights-garbage", damage("checkpoint/critic/model.safetensors", "garbage"), 2,
      "checkpoint/critic/: model.safetensors is"),
    C(5, "critic-missing", damage("checkpoint/critic", "remove"), 2,
      "checkpoint/critic/ is missing"),
    C(5, "settings-garbage", damage("checkpoint/settings.json", "garbage"), 2,
      "settings.json is damaged"),
    C(5, "state-missing", damage("checkpoint/trainer_state.pt", "remove"), 2,
      "trainer_state.pt is missing"),
    # 6. reward functions: any error while importing or on the test call -> one line, exit 2
    C(6, "syntax-error", with_modules, 2, "cannot import bad_syntax (SyntaxError",
      REWARD_MODEL="bad_syntax:score"),
    C(6, "raises-at-import", with_modules, 2,
      "cannot import raises_at_import (RuntimeError: no GPU for the "
      "judge)", REWARD_MODEL="raises_at_import:score"),
    C(6, "exits-at-import", with_modules, 2, "cannot import exits_at_import (SystemExit: 4)",
      REWARD_MODEL="exits_at_import:score"),
    C(6, "no-module", None, 2, "write a reward function as module:function", REWARD_MODEL=":score"),
    C(6, "relative-module", None, 2, "write a reward function as module:function",
      REWARD_MODEL=".reward_fns:score"),
    C(6, "no-function-name", None, 2, "write a reward function as module:function",
      REWARD_MODEL="reward_fns:"),
    C(6, "no-such-function", None, 2, "module reward_fns (", REWARD_MODEL="reward_fns:nope"),
    C(6, "exits-on-test-call", None, 2,
      "failed on a test call: reward function exits raised SystemExit",
      REWARD_MODEL="reward_fns:exits"),
    C(6, "exits-in-training", None, 1, "reward function exits_after_probe raised SystemExit",
      REWARD_MODEL="reward_fns:exits_after_probe"),
    C(6, "interrupt-in-training", None, 1,
      "reward function interrupts_after_probe raised KeyboardInterrupt",
      REWARD_MODEL="reward_fns:interrupts_after_probe"),
    # 9. checkpoints are data: anything else is refused, unread
    C(9, "pickled-code", pickled_code, 2, "holds Python objects besides tensors and plain values"),
    C(9, "old-numpy-state", numpy_state, 2,
      "holds Python objects besides tensors and plain values"),
    C(9, "state-missing-keys", lambda c: (copy_run(c), torch.save({"counters": {}}, os.path.join(
        c.out, "checkpoint", "trainer_state.pt")), {"RESUME": True, "MAX_STEPS": 3})[-1], 2,
      "trainer_state.pt is damaged (no optimizers, rng, schedulers)"),
]


def inside_run(path):
    """A finished run in c.out with a copy of one of the tiny inputs inside it, at path (relative to
    c.out)."""
    def prepare(c):
        copy_run(c)
        source = {"prompts.jsonl": c.tiny["prompts"]}.get(os.path.basename(path), c.tiny["policy"])
        target = c.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if os.path.isdir(source) else shutil.copy)(source, target)
        return {}
    return prepare


def user_folder(*names):
    """c.out is a folder of the user's own files (no run of ours was ever started there)."""
    def prepare(c):
        c.out.mkdir()
        for name in names:
            (c.out / name).write_text("the user's own file\n")
        return {}
    return prepare


def reward_module_in_out(c):
    c.out.mkdir()
    (c.out / "my_reward.py").write_text(
        "def score(prompts, responses):\n    return [1.0 for _ in responses]\n")
    c.monkeypatch.syspath_prepend(str(c.out))
    return {"REWARD_MODEL": "my_reward:score"}


def dangling_link(c):
    os.symlink(c.tmp / "gone", c.out)
    return {}


def config_in_out(c):
    """A config file kept in the run folder it configures."""
    copy_run(c)
    (c.out / "mine.py").write_text("LEARNING_RATE = 3e-4\n")
    c.argv = [str(c.out / "mine.py")]
    return {"OVERWRITE": True}


def resume_with(change):
    """A finished run, trained on a prompts file of its own, whose rows change(rows) then changed;
    resumed."""
    def prepare(c):
        copy_run(c)
        with open(c.tiny["prompts"]) as f:
            rows = f.readlines()
        data = c.tmp / "prompts.jsonl"
        data.write_text("".join(change(rows)))
        settings = c.out / "checkpoint" / "settings.json"
        settings.write_text(json.dumps({**json.loads(settings.read_text()), "DATASET": str(data)}))
        return {"RESUME": True, "MAX_STEPS": 3, "DATASET": str(data)}
    return prepare


def other_tokenizer(c):
    """The tiny policy's weights beside the tokenizer of a model with a larger vocabulary."""
    shutil.copytree(c.tiny["policy"], c.tmp / "mixed")
    from tasks import sentiment
    tok = sentiment.build_tokenizer(sentiment.make_corpus(n=500, seed=1), vocab_size=600)
    tok.save_pretrained(c.tmp / "mixed")
    return {}


def long_eval_prompt(c):
    path = c.tmp / "eval.jsonl"
    path.write_text(json.dumps({"prompt": "a long story " * 200}) + "\n")
    return {"EVAL_DATASET": str(path)}


def gzipped_with_split(c):
    import gzip
    with open(c.tiny["prompts"], "rb") as f, gzip.open(c.tmp / "prompts.jsonl.gz", "wb") as g:
        g.write(f.read())
    return {"DATASET": str(c.tmp / "prompts.jsonl.gz"), "DATASET_SPLIT": "test"}


# More classes, numbered on from the table above: 11 a run writes only files it owns; 12
# OVERWRITE replaces a run whole (mostly behaviour, below the table); 13 models are what they claim;
# 14 faults are named; 15 every entry point keeps the promise (below: the other scripts); 16 smaller
# surprises.
CASES += [
    C(11, "dataset-inside-the-run", inside_run("data/prompts.jsonl"), 2,
      r"DATASET='.*data/prompts.jsonl' lies "
      r"inside OUTPUT_DIR", DATASET="{out}/data/prompts.jsonl"),
    C(11, "actor-is-a-run-folder-inside-out", inside_run("sft"), 2,
      "ACTOR_MODEL=.* lies inside OUTPUT_DIR",
      ACTOR_MODEL="{out}/sft", CRITIC_MODEL="{out}/sft", OVERWRITE=True),
    C(11, "reward-module-inside-out", reward_module_in_out, 2,
      "REWARD_MODEL=.*my_reward.py' lies inside OUTPUT_DIR"),
    C(11, "out-inside-the-critic", None, 2, "OUTPUT_DIR=.* lies inside CRITIC_MODEL=",
      CRITIC_MODEL="{classifier}", OUTPUT_DIR="{classifier}/runs/new"),
    C(11, "out-inside-the-reward-model", None, 2, "OUTPUT_DIR=.* lies inside REWARD_MODEL=",
      REWARD_MODEL="{tiny_reward}", OUTPUT_DIR="{tiny_reward}/run"),
    C(11, "user-folder-with-their-config", user_folder("config.py", "notes.md"), 2,
      "is a folder of other files " r"\('config.py', 'notes.md'\), not a run's"),
    C(11, "user-folder-overwrite", user_folder("config.json"), 2, "is a folder of other files",
      OVERWRITE=True),
    C(11, "config-file-inside-out", config_in_out, 2, "mine.py lies inside OUTPUT_DIR"),
    C(13, "reward-with-two-labels", None, 2,
      r"has 2 outputs \('NEGATIVE', 'POSITIVE'\).*--REWARD_LABEL", REWARD_MODEL="{sentiment}"),
    C(13, "reward-label-unknown", None, 2, "REWARD_LABEL='GOOD' is none of REWARD_MODEL=",
      REWARD_MODEL="{sentiment}", REWARD_LABEL="GOOD"),
    C(13, "reward-label-index-out-of-range", None, 2, "REWARD_LABEL=2 is none of",
      REWARD_MODEL="{sentiment}", REWARD_LABEL=2),
    C(13, "policy-without-tokenizer", None, 2, "ACTOR_MODEL=.* holds no tokenizer files",
      ACTOR_MODEL="{no_tokenizer}", CRITIC_MODEL="{tiny_policy}"),
    C(13, "prompt-plus-response-past-positions", None, 2,
      r"plus MAX_NEW_TOKENS=200 is \d+ tokens, more than the "
      "128 positions ACTOR_MODEL", MAX_NEW_TOKENS=200),
    C(13, "a-long-held-out-prompt-past-positions", long_eval_prompt, 2,
      r"the longest prompt \(128 tokens, "
      r"MAX_PROMPT_LENGTH=128\) plus MAX_NEW_TOKENS=8 is 136 tokens, more than the 128 positions"),
    C(13, "another-models-tokenizer", other_tokenizer, 2,
      r"its tokenizer has \d+ tokens, more than the \d+ the "
      "model embeds", ACTOR_MODEL="{tmp}/mixed", CRITIC_MODEL="{tmp}/mixed"),
    C(13, "actor-is-a-classifier", None, 2,
      "ACTOR_MODEL=.* is a Qwen3ForSequenceClassification, not a causal LM",
      ACTOR_MODEL="{classifier}"),
    C(14, "reward-tensor-requires-grad", None, 2,
      "failed on a test call: reward function grad_tensor returned a tensor that requires "
      "grad", REWARD_MODEL="reward_fns:grad_tensor"),
    C(14, "dangling-output-link", dangling_link, 2,
      "is a symbolic link to .*gone', which does not exist"),
    C(14, "reward-string", None, 2,
      "reward function returns_text returned str, not a list of floats",
      REWARD_MODEL="reward_fns:returns_text"),
    C(16, "split-of-a-single-file", None, 2,
      "DATASET_SPLIT='validation', but DATASET=.* is one file", DATASET_SPLIT="validation"),
    C(16, "split-of-a-gzipped-file", gzipped_with_split, 2,
      "DATASET_SPLIT='test', but DATASET=.*jsonl.gz' is one"),
    C(16, "resume-after-rows-were-added", resume_with(lambda rows: rows + rows[:3]), 2,
      r"DATASET is not what the checkpoint was trained on \(48 prompts then, 51 now\)"),
    C(16, "resume-after-rows-were-reordered", resume_with(lambda rows: rows[::-1]), 2,
      "the same number of prompts, but not the same prompts"),
    C(16, "repeated-setting", lambda c: setattr(c, "argv", ["--LEARNING_RATE=1e-3"]) or {}, 2,
      r"--LEARNING_RATE is given twice \('0.0003' and '1e-3'\)", LEARNING_RATE="0.0003"),
]


def config_file(text):
    """A config file of the user's, given before the command line's settings."""
    def prepare(c):
        (c.tmp / "mine.py").write_text(text)
        c.argv = [str(c.tmp / "mine.py")]
        return {}
    return prepare


def conversations(rows, name="chats.jsonl"):
    """A dataset of conversations (lists of [role, content]) with the tiny prompts' row count."""
    def prepare(c):
        path = c.tmp / name
        with open(path, "w") as f:
            for i in range(8):
                turns = rows.get(i, [("user", f"prompt {i}")])
                messages = [{"role": r, "content": t} for r, t in turns]
                f.write(json.dumps({"prompt": messages}) + "\n")
        return {}
    return prepare


# Classes numbered on: 17 nothing said to a program goes unread (config files); 18 chat templates
# are checked at start-up; 19 checkpoints are checked whole; 20 resume reads the run's own settings.
CASES += [
    C(17, "config-file-lowercase", config_file("learning_rate = 1e-6\n"), 2,
      r"unknown setting learning_rate in .*mine.py. Did you mean LEARNING_RATE in"),
    C(17, "config-file-misspelt", config_file("LEARNIG_RATE = 1e-6\n"), 2,
      r"unknown setting LEARNIG_RATE in .*Did you mean LEARNING_RATE in"),
    C(17, "config-file-helper", config_file("import os\nroot = os.sep\nSEED = 3\n"), 2,
      r"unknown setting root in .*leading underscore \(_root\)"),
    C(17, "config-file-function", config_file("def pick(x):\n    return x\nSEED = 3\n"), 2,
      r"unknown setting pick in"),
    C(18, "template-refuses-system", None, 2,
      "SYSTEM_PROMPT='be brief': ACTOR_MODEL's chat template refuses a system turn "
      r"\(TemplateError: System role not supported\): set --SYSTEM_PROMPT=None",
      ACTOR_MODEL="{strict_template}", CRITIC_MODEL="{strict_template}",
      SYSTEM_PROMPT="be brief"),
    C(18, "template-refuses-a-row", conversations({5: [("user", "a"), ("user", "b")]}), 2,
      r"DATASET='.*chats.jsonl', column 'prompt', row 5: ACTOR_MODEL's chat template cannot "
      r"render it \(TemplateError: Conversation roles must alternate",
      ACTOR_MODEL="{strict_template}", CRITIC_MODEL="{strict_template}",
      DATASET="{tmp}/chats.jsonl"),
    C(18, "template-refuses-a-held-out-row",
      conversations({0: [("assistant", "hi"), ("user", "b")]}, "held.jsonl"), 2,
      r"EVAL_DATASET='.*held.jsonl', column 'prompt', row 0: ACTOR_MODEL's chat template",
      ACTOR_MODEL="{strict_template}", CRITIC_MODEL="{strict_template}",
      EVAL_DATASET="{tmp}/held.jsonl"),
    C(19, "policy-config-garbage", damage("checkpoint/policy/config.json", "garbage"), 2,
      "checkpoint/policy/config.json is damaged"),
    C(19, "critic-config-truncated", damage("checkpoint/critic/config.json", "truncate"), 2,
      "checkpoint/critic/config.json is damaged"),
    C(19, "tokenizer-truncated", damage("checkpoint/policy/tokenizer.json", "truncate"), 2,
      "checkpoint/policy/tokenizer.json is damaged"),
    C(19, "data-json-garbage", damage("checkpoint/data.json", "garbage"), 2,
      "checkpoint/data.json is damaged"),
    C(20, "resume-another-algorithm", copy_run, 2, "ALGORITHM 'ppo' -> 'grpo'", RESUME=True,
      MAX_STEPS=3, ALGORITHM="grpo", GROUP_SIZE=2),
    C(20, "resume-from-a-config-file", chain(copy_run, config_file("KL_COEF = 0.2\n")), 2,
      "KL_COEF 0.05 -> 0.2", RESUME=True, MAX_STEPS=3),
    C(20, "resume-no-checkpoint-names-nothing-built", None, 2,
      "holds no checkpoint: start the run without --RESUME", RESUME=True),
]


class Context:
    def __init__(self, tiny, tmp, finished, modules, monkeypatch, variants):
        self.tiny, self.tmp, self.out = tiny, tmp, tmp / "run"
        self.finished, self.modules = finished, modules
        self.monkeypatch, self.after, self.argv = monkeypatch, lambda: True, []
        self.names = {"tmp": str(tmp), "out": str(self.out), "tiny_prompts": tiny["prompts"],
                      "tiny_policy": tiny["policy"], "tiny_reward": tiny["reward"], **variants}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.cls}-{c.name}" for c in CASES])
def test_hostile_input(case, tiny, tmp_path, finished, modules, monkeypatch, capsys, variants):
    c = Context(tiny, tmp_path, finished, modules, monkeypatch, variants)
    overrides = dict((case.prepare(c) if case.prepare else None) or {})
    overrides.update({k: v.format(**c.names) if isinstance(v, str) else v for k,
                      v in case.overrides.items()})
    before = {name: snapshot(path) for name, path in (("out", c.out), ("tiny", tiny["dir"]),
                                                      ("variants", variants["dir"]))}
    lock_before = os.path.exists(c.out / run_files.RunLock.NAME)
    code = ppo.main(args_for(tiny, c.out, **overrides) + c.argv)
    output = "".join(capsys.readouterr())
    assert code == case.code, output[-3000:]
    assert_one_message(output, code, case.message)
    # refused: nothing written, nothing changed, and the one line is not buried under the settings
    if code == 2:
        assert snapshot(c.out) == before["out"]
        assert "settings:" not in output, output[-3000:]
        # no lock file left behind either
        assert os.path.exists(c.out / run_files.RunLock.NAME) == lock_before
    else:  # a fault in training: the run is saved, the step that failed rolled back
        assert checkpoints.checkpoint_problem(str(c.out / "checkpoint"), ppo.ALGORITHMS) is None
    assert snapshot(tiny["dir"]) == before["tiny"]
    assert snapshot(variants["dir"]) == before["variants"]
    assert c.after()


def test_the_table_covers_every_class_three_times():
    counts = {k: sum(c.cls == k for c in CASES) for k in range(1, 21)}
    # 7, 8, 12, 15: below
    assert all(counts[k] >= 3 for k in (1, 2, 3, 4, 5, 6, 9, 11, 13, 14, 16, 17, 18, 19, 20)), \
        counts
    assert len(CASES) >= 60


# ---- 3. one run per folder, with real processes --------------------------------------------------
HOLD = (
    "import sys, time; from machinery import run_files; lock = run_files.RunLock(sys.argv[1]); "
    "print('locked', flush=True); time.sleep(300)")


def test_a_busy_folder_is_refused_naming_the_holder_and_freed_when_it_dies(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(out)
        assert ppo.main(args_for(tiny, out)) == 2
        assert_one_message("".join(capsys.readouterr()), 2,
                           f"is in use by a run that is still going (process {holder.pid} on ")
        assert snapshot(out) == before and os.listdir(out) == ["run.lock"]
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the dead holder's lock
    assert ppo.main(args_for(tiny, out, MAX_STEPS=1)) == 0


def test_two_runs_started_together_into_one_folder_do_not_mix(tiny, tmp_path):
    out = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "ppo.py", *args_for(tiny, out, MAX_STEPS=3)],
                              cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                                  for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outputs
    refused = outputs[codes.index(2)]
    assert "Traceback" not in refused and ("is in use by a run that is still going" in refused
                                           or "already holds a run" in refused), refused
    with open(out / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [0, 1, 2]


def test_a_folder_whose_run_died_at_once_is_free(tiny, tmp_path):
    """A run killed before its first step leaves run.lock, config.json and an empty metrics.jsonl:
    no run."""
    out = tmp_path / "run"
    out.mkdir()
    for name, text in (("run.lock", "12345 elsewhere\n"), ("config.json", "{}"),
                       ("metrics.jsonl", "")):
        (out / name).write_text(text)
    assert checkpoints.check_output_dir(load_config(args_for(tiny, out)), ppo.ALGORITHMS) is None


# ---- 7. a full disk, a kill while saving the final folders ---------------------------------------
def can_mount():
    return shutil.which("unshare") and subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True).returncode == 0


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _,
               files in os.walk(folder) for f in files)


@pytest.mark.skipif(not can_mount(),
                    reason="needs a private mount namespace (root, unshare) for a small tmpfs")
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tiny, tmp_path, finished):
    """A real ENOSPC: OUTPUT_DIR on a tmpfs that holds one checkpoint and a half, so the second save
    fails."""
    size = int(folder_bytes(finished / "checkpoint") * 1.5)
    mnt, copy = tmp_path / "disk", tmp_path / "copy"
    mnt.mkdir()
    args = " ".join(f"'{a}'" for a in args_for(tiny, mnt / "run", MAX_STEPS=4))
    script = (
        f"mount -t tmpfs -o size={size} tmpfs {mnt} && {sys.executable} ppo.py {args}; code=$?; "
        f"cp -a {mnt}/run {copy}; exit $code")
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert_one_message(out.stdout + out.stderr, 1,
                       r"checkpoint \(.* MiB free on that disk: most likely full; .*\); the "
                       r"previous one is kept")
    assert checkpoints.checkpoint_problem(str(copy / "checkpoint"), ppo.ALGORITHMS) is None
    assert not (copy / "checkpoint.tmp").exists()


@pytest.mark.skipif(not can_mount(),
                    reason="needs a private mount namespace (root, unshare) for a tmpfs")
def test_a_read_only_output_folder_is_refused_before_loading(tiny, tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    args = " ".join(f"'{a}'" for a in args_for(tiny, mnt / "run"))
    script = f"mount -t tmpfs -o ro,size=64k tmpfs {mnt} && exec {sys.executable} ppo.py {args}"
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert_one_message(out.stderr, 2, f"cannot be written ('{mnt}': a read-only file system)")


@pytest.mark.skipif(os.geteuid() == 0,
                    reason="root writes through permission bits (see the read-only case)")
def test_a_folder_this_user_cannot_write_is_refused(tiny, tmp_path, capsys):
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o555)
    assert ppo.main(args_for(tiny, parent / "run")) == 2
    assert_one_message("".join(capsys.readouterr()), 2, "cannot be written (")


KILL_IN_FINAL_SAVE = """
import os, signal, sys, transformers
import ppo
real = transformers.PreTrainedModel.save_pretrained
def save_pretrained(self, path, *a, **k):  # dies half-way through writing the final policy/
    real(self, path, *a, **k)
    if str(path).endswith(os.sep + "policy.tmp"):
        with open(os.path.join(path, "model.safetensors"), "r+b") as f:
            f.truncate(100)
        os.kill(os.getpid(), signal.SIGKILL)
transformers.PreTrainedModel.save_pretrained = save_pretrained
sys.exit(ppo.main(sys.argv[1:]))
"""


# slow (14 s): a failed final save keeping the previous folder runs in the next test
@pytest.mark.slow
def test_a_kill_while_writing_the_final_policy_leaves_the_previous_one_loadable(
        tiny, tmp_path, finished):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = snapshot(out / "policy")
    proc = subprocess.run([sys.executable, "-c", KILL_IN_FINAL_SAVE,
                           *args_for(tiny, out, MAX_STEPS=3, RESUME=True)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert snapshot(out / "policy") == before  # the previous policy/, whole
    models.load_causal_lm(str(out / "policy"), torch.device("cpu"), torch.float32)
    assert models.weights_problem(str(out / "policy.tmp"))  # the half-written one stayed aside


def test_no_space_for_the_final_policy_keeps_the_previous_one(
        tiny, tmp_path, finished, monkeypatch, capsys):
    import transformers
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = snapshot(out / "policy")
    real = transformers.PreTrainedModel.save_pretrained

    def save_pretrained(self, path, *args, **kwargs):
        if str(path).endswith(os.sep + "policy.tmp"):
            os.makedirs(path, exist_ok=True)
            (open(os.path.join(path, "model.safetensors"), "wb")).write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", save_pretrained)
    assert ppo.main(args_for(tiny, out, MAX_STEPS=3, RESUME=True)) == 1
    assert_one_message("".join(capsys.readouterr()), 1,
                       "policy (No space left on device); the previous one is kept")
    assert snapshot(out / "policy") == before and not (out / "policy.tmp").exists()


# ---- 8. signals ----------------------------------------------------------------------------------
SLOW_LOAD = """
import sys, time
import ppo
from machinery import models
real = models.load_causal_lm
def load_causal_lm(*a, **k):
    print("LOADING", flush=True)
    time.sleep(60)
    return real(*a, **k)
models.load_causal_lm = load_causal_lm
sys.exit(ppo.main(sys.argv[1:]))
"""


def test_ctrl_c_while_loading_says_one_line_and_writes_nothing(tiny, tmp_path):
    sig = signal.SIGINT
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-u", "-c", SLOW_LOAD, *args_for(tiny, out)], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.strip() == "LOADING":
            break
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert_one_message(stderr, proc.returncode,
                       f"{signal.Signals(sig).name} while starting; nothing was written")
    assert not out.exists()


def test_a_second_sigterm_stops_at_once_keeping_the_last_checkpoint(tiny, tmp_path):
    sig = signal.SIGTERM  # a second Ctrl-C takes the same path (request_stop)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "ppo.py",
                             *args_for(tiny, out, REWARD_MODEL="reward_fns:slow",
                                                                  MAX_STEPS=30)],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 120
    while not ((out / "metrics.jsonl").exists()
               and (out / "metrics.jsonl").read_text().count("\n") >= 2) \
            and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(sig)
    time.sleep(0.3)
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + sig, output[-3000:]
    assert "Traceback" not in output
    assert f"stopped at once by a second {signal.Signals(sig).name}" in output
    assert checkpoints.checkpoint_problem(str(out / "checkpoint"), ppo.ALGORITHMS) is None


# ---- 1. hub ids, beyond the table ----------------------------------------------------------------
def hub_cache(tiny, root, repo_id):
    """The tiny policy laid out as the hub client caches a download: what a user who ran once with a
    network has."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(tiny["policy"], repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return root


def test_a_hub_id_goes_to_from_pretrained_and_loads_from_the_hub_cache_offline(tiny, tmp_path):
    cache = hub_cache(tiny, tmp_path / "hub", "someone/tiny-qwen3")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "ppo.py",
                           *args_for(tiny, out, ACTOR_MODEL="someone/tiny-qwen3",
                                     CRITIC_MODEL="someone/tiny-qwen3", MAX_STEPS=1)],
                          cwd=ROOT, env={**ENV, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "policy" / "model.safetensors").exists()


def test_the_seed_configuration_offline_is_one_line_in_seconds(tmp_path):
    """The README's own example with HF_HUB_OFFLINE=1 and with no hub at all (the table has both
    in-process): one line naming the first setting that needs the hub, without the hub client's half
    a minute of retries."""
    seed = ["--ACTOR_MODEL=Qwen/Qwen3-0.6B", "--CRITIC_MODEL=Qwen/Qwen3-0.6B",
            "--REWARD_MODEL=OpenAssistant/reward-model-deberta-v3-large-v2",
            f"--OUTPUT_DIR={tmp_path / 'run'}"]
    # a real process, the hub client's own settings read at import
    for env in ({"HF_ENDPOINT": UNREACHABLE},):
        t0 = time.time()
        proc = subprocess.run([sys.executable, "ppo.py", *seed], cwd=ROOT, env={**ENV, **env},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2
        assert_one_message(proc.stderr, 2,
                           "ACTOR_MODEL='Qwen/Qwen3-0.6B' is neither a local folder nor ")
        # the retries alone take 29 s; the refusal is the start-up's few seconds
        assert time.time() - t0 < 25
    assert not (tmp_path / "run").exists()


def test_a_local_folder_named_like_a_hub_id_loads_as_a_folder(tiny, tmp_path, monkeypatch):
    shutil.copytree(tiny["policy"], tmp_path / "org" / "name")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", UNREACHABLE)  # the hub is never asked
    assert models.load_model_config("ACTOR_MODEL", "org/name").model_type == "qwen3"


# ---- 2. typed settings, beyond the table ---------------------------------------------------------
def test_settings_are_read_by_their_type():
    cfg = load_config(["--OVERWRITE=false", "--RESUME=FALSE", "--DEBUG=True",
                                 "--KL_TARGET=none",
                           "--DYNAMIC_SAMPLING=None", "--CHAT_TEMPLATE=false",
                           "--CRITIC_LEARNING_RATE=0",
                           "--LORA_TARGET_MODULES=q_proj,v_proj", "--MAX_GRAD_NORM=None",
                           "--OUTPUT_DIR=None"])
    assert cfg.OVERWRITE is False
    assert cfg.RESUME is False
    assert cfg.DEBUG is True
    assert cfg.KL_TARGET is None
    assert cfg.DYNAMIC_SAMPLING is False  # None: the algorithm's default, resolved
    # a 0 that means 0 stays 0
    assert cfg.CHAT_TEMPLATE is False and cfg.CRITIC_LEARNING_RATE == 0.0
    assert cfg.LORA_TARGET_MODULES == ["q_proj", "v_proj"] and cfg.MAX_GRAD_NORM is None
    assert cfg.OUTPUT_DIR == "None"  # a folder name: OUTPUT_DIR takes no None
    assert (load_config(["--LORA_TARGET_MODULES=['k_proj']"]).LORA_TARGET_MODULES
            == ["k_proj"])


def test_a_critic_learning_rate_of_0_leaves_the_critic_as_it_was(tiny, tmp_path):
    trainer = ppo.PPOTrainer(
        load_config(args_for(tiny, tmp_path / "run", CRITIC_LEARNING_RATE=0)),
        log=lambda *a: None)
    before = [p.detach().clone() for p in trainer.critic.parameters()]
    trainer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.critic.parameters()))


def test_every_config_constant_has_a_kind_and_every_kind_a_constant():
    import config
    names = {k for k in vars(config) if k.isupper() and not k.startswith("_")}
    assert names == set(settings.setting_kinds(ppo.TABLES))
    kinds = settings.setting_kinds(ppo.TABLES)
    for name in names:  # and every default is valid
        assert kinds[name].problem(name, getattr(config, name)) is None, name


def test_debug_shows_the_traceback_of_a_refusal_even_while_parsing():
    with pytest.raises(Refusal, match="LEARNING_RATE must be"):
        ppo.main(["--LEARNING_RATE=abc", "--DEBUG=True"])


# ---- 5. damaged checkpoints, beyond the table ----------------------------------------------------
def test_a_damaged_checkpoint_falls_back_to_a_whole_prev_in_a_moved_run(
        tiny, tmp_path, finished, capsys):
    out = tmp_path / "moved"  # a copy of the run somewhere else, resumed with a trailing slash
    shutil.copytree(finished, out)
    shutil.copytree(out / "checkpoint", out / "checkpoint.prev")
    (out / "checkpoint" / "trainer_state.pt").write_bytes(b"garbage")
    assert ppo.main(args_for(tiny, str(out) + "/", MAX_STEPS=3, RESUME=True)) == 0
    output = "".join(capsys.readouterr())
    assert "trainer_state.pt is damaged" in output and "checkpoint.prev instead" in output
    with open(out / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [0, 1, 2]
    assert checkpoints.checkpoint_problem(str(out / "checkpoint"), ppo.ALGORITHMS) is None
    assert not (out / "checkpoint.prev").exists()


def test_a_module_named_as_reward_model_without_its_function_says_so(tiny, tmp_path, capsys):
    assert ppo.main(args_for(tiny, tmp_path / "run", REWARD_MODEL="reward_fns")) == 2
    assert_one_message("".join(capsys.readouterr()), 2,
                       "is a Python module here, not a model: name its reward "
                                                        "function as reward_fns:FUNCTION")


# ---- 12. OVERWRITE replaces a run whole; what a folder holds describes one run -------------------
def test_overwrite_removes_the_old_run_at_once_and_keeps_the_users_own_files(
        tiny, tmp_path, finished):
    """The old run's final models, TensorBoard events and copied configs go before the new run
    writes anything, so a new run that fails at its first step leaves no stale policy/ beside its
    own metrics; a file of the user's in the folder stays."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    for name, text in (("tensorboard/old/events.out.tfevents.1", "old"),
                       ("configs/old.py", "X = 1\n"),
                       ("notes.md", "my notes\n"), (".replaced/checkpoint/left-by-a-kill", "")):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    assert (out / "policy").is_dir()
    code = ppo.main(args_for(tiny, out, OVERWRITE=True, REWARD_MODEL="reward_fns:exits_after_probe",
                             MAX_STEPS=1))
    assert code == 1  # the new run's first step fails
    names = set(os.listdir(out))
    assert {"policy", "critic", "tensorboard", "configs", ".replaced"}.isdisjoint(names), names
    assert (out / "notes.md").read_text() == "my notes\n"
    # the failed step was rolled back: no row of the old run survives either
    assert plotting_rows(out) == []


def plotting_rows(out):
    import plotting
    return plotting.read_metrics(out / "metrics.jsonl")


def test_config_files_of_the_same_name_are_both_kept(tiny, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "base.py").write_text("LEARNING_RATE = 1e-4\n")
    (tmp_path / "b" / "base.py").write_text("LEARNING_RATE = 2e-4\n")
    out = tmp_path / "run"
    argv = [str(tmp_path / "a" / "base.py"), str(tmp_path / "b" / "base.py")]
    assert ppo.main(argv + args_for(tiny, out, MAX_STEPS=1)) == 0
    assert sorted(os.listdir(out / "configs")) == ["1_base.py", "2_base.py"]
    assert (out / "configs" / "2_base.py").read_text() == "LEARNING_RATE = 2e-4\n"
    assert json.loads((out / "config.json").read_text())["LEARNING_RATE"] == 2e-4


def test_a_refused_run_leaves_no_lock_file_in_an_existing_folder(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    assert ppo.main(args_for(tiny, out, REWARD_MODEL="reward_fns:grad_tensor")) == 2
    assert os.listdir(out) == []


# ---- 13. models that are what they claim, used as they claim -------------------------------------
def test_reward_label_reads_the_named_output(tiny, variants):
    # any case
    model = rewards.RewardModel(variants["sentiment"], "cpu", torch.float32, label="positive")
    batch = model.encode(["a film"], [" it was good"], padding=True, return_tensors="pt")
    logits = model.model(**batch).logits  # (1, 2)
    assert model.label == 1 and model(["a film"], [" it was good"]).item() == logits[0, 1].item()
    assert logits[0, 0].item() != logits[0, 1].item()  # so reading the other one would be seen
    assert rewards.RewardModel(variants["sentiment"], "cpu", torch.float32, label=0).label == 0


def test_a_two_label_classifier_is_a_critic_start_with_a_fresh_value_head(
        tiny, variants, tmp_path, capsys):
    out = tmp_path / "run"
    assert ppo.main(args_for(tiny, out, CRITIC_MODEL=variants["classifier"], MAX_STEPS=1)) == 0
    printed = capsys.readouterr().out
    assert "starts a one-output value head at zero" in printed
    from transformers import AutoConfig
    assert AutoConfig.from_pretrained(out / "critic").num_labels == 1


def test_a_causal_lm_critic_loads_without_transformers_missing_weights_report(tmp_path):
    """The value head a causal LM lacks is new by design: transformers' table of MISSING weights
    (logged by a plain from_pretrained of this folder) is not logged, and transformers' logging
    level is left as it was. (Read from a handler of our own: the library's handler writes to
    the stream that was stderr when transformers was first imported.)"""
    import io
    import logging as py_logging

    from transformers import AutoModelForSequenceClassification, Qwen3Config, Qwen3ForCausalLM
    from transformers.utils import logging
    Qwen3ForCausalLM(Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                 head_dim=16)).save_pretrained(tmp_path / "lm")
    logged = io.StringIO()
    handler = py_logging.StreamHandler(logged)
    logging.add_handler(handler)
    try:
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "lm", num_labels=1)
        assert "MISSING" in logged.getvalue()  # what the user would otherwise see
        logged.seek(0)
        logged.truncate()
        level = logging.get_verbosity()
        critic = models.ValueModel(str(tmp_path / "lm"), "cpu")
        assert logging.get_verbosity() == level
    finally:
        logging.remove_handler(handler)
    assert critic.new_head and logged.getvalue() == ""
    assert critic.head.weight.abs().sum().item() == 0


def test_evaluate_refuses_what_is_no_policy_in_one_line(tiny, variants, finished, capsys):
    data = f"--DATASET={tiny['prompts']}"
    for path, expected in ((str(finished), "is a run's folder: give its trained policy"),
                           (variants["sentiment"],
                            "is a DebertaV2ForSequenceClassification, not a causal LM"),
                           (variants["no_tokenizer"], "holds no tokenizer files")):
        assert evaluate_main([path, data, "--REWARD_MODEL=reward_fns:word_count"]) == 2
        assert_one_message(capsys.readouterr().err, 2, expected)
    assert evaluate_main([]) == 2
    assert_one_message(capsys.readouterr().err, 2,
                       "no policy folder given; usage: python evaluate.py")


def evaluate_main(argv):
    import evaluate
    return evaluate.main(argv)


def test_evaluate_needs_no_actor_or_critic_model(tiny, tmp_path, monkeypatch, capsys):
    """config.py's ACTOR_MODEL and CRITIC_MODEL (not built in a fresh clone) are not evaluation's
    business."""
    import config
    monkeypatch.setattr(config, "ACTOR_MODEL", str(tmp_path / "not-built"))
    monkeypatch.setattr(config, "CRITIC_MODEL", str(tmp_path / "nor"))
    args = [f"--DATASET={tiny['prompts']}", "--REWARD_MODEL=reward_fns:bf16_tensor",
            "--EVAL_SAMPLES=1", "--MAX_NEW_TOKENS=4"]
    assert evaluate_main([tiny["policy"], *args]) == 0, capsys.readouterr().err


# ---- 14. faults are named, with the right advice and code ----------------------------------------
def test_a_bf16_reward_and_one_that_moves_the_working_directory_train(tiny, tmp_path, monkeypatch):
    """OUTPUT_DIR is relative here: the reward function's chdir must not send the run's files
    elsewhere."""
    monkeypatch.chdir(tmp_path)
    for name in ("bf16_tensor", "changes_directory"):
        assert ppo.main(args_for(tiny, name, REWARD_MODEL=f"reward_fns:{name}", MAX_STEPS=1)) == 0
        assert os.getcwd() == str(tmp_path)
        assert len(plotting_rows(tmp_path / name)) == 1 and (tmp_path / name / "policy").is_dir()
    assert not os.path.exists(os.path.join(TESTS, "changes_directory"))


def test_sigterm_during_the_final_save_is_not_ignored(tiny, tmp_path, monkeypatch, capsys):
    save = ppo.checkpoints.save_final

    def save_then_signalled(*args):
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the run's StopOnSignal: the save goes on
        save(*args)
    monkeypatch.setattr(ppo.checkpoints, "save_final", save_then_signalled)
    out = tmp_path / "run"
    assert ppo.main(args_for(tiny, out, MAX_STEPS=1)) == 128 + signal.SIGTERM
    printed = capsys.readouterr().out
    assert ("stopped by SIGTERM at the end of the run, once its final checkpoint and folders were "
            "written") in printed
    assert (out / "policy" / "config.json").exists()


# ---- 15. every entry point: one line, exit 2, before any work ------------------------------------
def test_plotting_refuses_in_one_line(tmp_path, capsys):
    import plotting
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "metrics.jsonl").write_bytes(b"\x00\xff not json\n{\"step\": \n")
    (tmp_path / "arrays").mkdir()
    (tmp_path / "arrays" / "metrics.jsonl").write_text("[1, 2]\n5\n\"text\"\nnull\n")
    cases = [([str(tmp_path / "nope")], "is no folder"),
             ([str(tmp_path)], "holds no metrics.jsonl"),
             ([str(tmp_path / "empty")], "has no rows of metrics"),
             ([str(tmp_path / "garbage")], "has no rows"),
             ([str(tmp_path / "arrays")], "has no rows"),
             ([], "usage: python plotting.py OUTPUT_DIR"),
             (["a", "b"], "usage:")]
    for argv, expected in cases:
        assert plotting.main(argv) == 2, argv
        assert_one_message(capsys.readouterr().err, 2, expected)
    proc = subprocess.run([sys.executable, plotting.__file__, str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr  # and as a command
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "metrics.jsonl").write_text(
        "[1]\n" + json.dumps({"step": 0, "reward": 1.0, "kl": None}) + "\n"
        + json.dumps(
            {"step": 1, "reward": "high"}) + "\nnot json\n")
    assert plotting.main([str(mixed)]) == 0 and (mixed / "ppo_metrics.png").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--algorithms=ppo,rlhf"], "--algorithms=ppo,rlhf: unknown 'rlhf'"),
    (["--responses=0"], "--responses must be at least 1, got 0"),
    (["--", "--BATCH_SIZE=4"], "bench/compare.py sets --BATCH_SIZE itself"),
    (["--", "--LEARNING_RATE=fast"], "LEARNING_RATE must be a number >= 0 or None, got 'fast'"),
    (["--out={runs}"], r"ppo already exists: this script writes only new run folders"),
])
def test_compare_refuses_before_building_anything(argv, expected, tmp_path, monkeypatch, capsys):
    from bench import compare
    runs = tmp_path / "runs"
    (runs / "ppo").mkdir(parents=True)
    (runs / "ppo" / "run.lock").write_text("")
    monkeypatch.setattr(sys, "argv", ["bench/compare.py", *[a.format(runs=runs) for a in argv]])
    monkeypatch.setattr("tasks.sentiment.build", lambda: pytest.fail("built before refusing"))
    with pytest.raises(SystemExit) as e:
        compare.main()
    assert e.value.code == 2
    assert_one_message(capsys.readouterr().err, 2, expected)


@pytest.mark.parametrize("argv, expected", [
    (["--steps=0"], "--steps must be at least 1"),
    (["--out={tmp}/missing"], "is no folder: create it first"),
    (["--shapes=huge"], "--shapes=huge: unknown huge"),
    (["--warmup=-1"], "--warmup must be at least 0"),
])
def test_bench_refuses_before_measuring(argv, expected, tmp_path, monkeypatch, capsys):
    from bench import speed as bench
    monkeypatch.setattr(sys, "argv", ["bench/speed.py", *[a.format(tmp=tmp_path) for a in argv]])
    monkeypatch.setattr(bench, "measure", lambda *a: pytest.fail("measured before refusing"))
    with pytest.raises(SystemExit) as e:
        bench.main()
    assert e.value.code == 2
    assert_one_message(capsys.readouterr().err, 2, expected)


# ---- 16. smaller surprises, each decided ---------------------------------------------------------
def test_logs_are_strict_json_and_the_samples_are_what_was_sampled(tiny, tmp_path):
    """A NaN reward is written as null (strict JSON), and a reward function that rewrites its inputs
    in place changes neither the logged samples nor the training."""
    out = tmp_path / "nan"  # the held-out evaluation is not guarded: its NaN mean is logged
    assert ppo.main(args_for(tiny, out, REWARD_MODEL="reward_fns:nan_after_probe", MAX_STEPS=1,
                             EVAL_DATASET=tiny["prompts"], EVAL_MAX_PROMPTS=2, EVAL_SAMPLES=1)) == 0

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a .jsonl log"))
    rows = [strict(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["eval_reward"] is None
    assert rows[0]["skip_reason"]
    assert rows[-1]["eval_reward"] is None
    line = run_files.json_line({"a": float("inf"), "b": -float("inf"), "c": 1.5})
    assert strict(line) == {"a": None, "b": None, "c": 1.5}
    out = tmp_path / "mutated"
    assert ppo.main(args_for(tiny, out, REWARD_MODEL="reward_fns:mutates_inputs", MAX_STEPS=1)) == 0
    samples = [strict(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["response"] != "MUTATED" and s["prompt"] != "MUTATED" for s in samples)
    reference = tmp_path / "reference"
    assert (ppo.main(args_for(tiny, reference, REWARD_MODEL="reward_fns:word_count", MAX_STEPS=1))
            == 0)
    assert (reference / "samples.jsonl").read_text() == (out / "samples.jsonl").read_text()


def test_a_tilde_in_a_path_from_a_config_file_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "home.py").write_text('OUTPUT_DIR = "~/runs/x"\nDATASET = "~/data.jsonl"\n')
    cfg = load_config([str(tmp_path / "home.py")])
    assert cfg.OUTPUT_DIR == str(tmp_path / "runs" / "x")
    assert cfg.DATASET == str(tmp_path / "data.jsonl")


def test_a_gzipped_dataset_is_read(tiny, tmp_path):
    import gzip
    with open(tiny["prompts"], "rb") as f, gzip.open(tmp_path / "p.jsonl.gz", "wb") as g:
        g.write(f.read())
    cfg = load_config(args_for(tiny, tmp_path / "run",
                                         DATASET=str(tmp_path / "p.jsonl.gz")))
    assert (data.load_prompts(cfg)
            == data.load_prompts(load_config(args_for(tiny, tmp_path / "run"))))


def test_only_a_full_disk_is_told_to_free_space(tmp_path):
    """Whether a failed write was a full disk comes from the error (ENOSPC, EDQUOT) or the free
    space, never from words that happen to be in the path."""
    from machinery.run_files import write_failure
    folder = tmp_path / "fullname's space"
    folder.mkdir()
    path = str(folder / "checkpoint")
    assert (write_failure(OSError(errno.EACCES, "Permission denied"), path)
            == ("Permission denied", False))
    assert write_failure(OSError(errno.ENOSPC, "No space left on device"), path)[1] is True
    assert write_failure(OSError(errno.EDQUOT, "Disk quota exceeded"), path)[1] is True


# ---- 21. readers never harm a writer -------------------------------------------------------------
READER = """
import os, sys, time
sys.path.insert(0, sys.argv[2])
import plotting
from bench import health
out, codes, start = sys.argv[1], [], time.time()
while not os.path.exists(os.path.join(out, "policy")) and time.time() < start + 300:
    codes.append(plotting.main([out]))
    try:
        health.report([out])
    except health.Refusal:
        pass
print("reader codes", sorted(set(codes)), len(codes), flush=True)
"""


def test_readers_hammering_a_live_run_never_harm_it(tiny, tmp_path):
    """plotting.py and bench/health.py's report read and redraw a run's folder in a loop while it
    trains with PLOT_EVERY=1 (so both draw the same charts at once): the run ends as usual, the
    reader never fails, and no temporary file is left."""
    out = tmp_path / "run"
    run = subprocess.Popen([sys.executable, "ppo.py", *args_for(
        tiny, out, MAX_STEPS=4, PLOT_EVERY=1, SAVE_EVERY=100)], cwd=ROOT, env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(out), ROOT], cwd=ROOT, env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    output = run.communicate(timeout=600)[0]
    said = [r.communicate(timeout=120)[0] for r in readers]
    assert run.returncode == 0 and "warning" not in output, output[-3000:]
    for text, reader in zip(said, readers):
        assert reader.returncode == 0 and "Traceback" not in text, text[-3000:]
        codes = eval(text.split("reader codes", 1)[1].split("]")[0] + "]")
        assert set(codes) <= {0, 2}, text  # 2: no rows yet
    assert not [n for n in os.listdir(out) if ".tmp" in n], os.listdir(out)
    assert len(plotting_rows(out)) == 4


def test_a_chart_that_cannot_be_drawn_is_a_warning_not_a_fault(tiny, tmp_path, monkeypatch,
                                                               capsys):
    import plotting

    def broken(out_dir):
        raise FileNotFoundError(2, "No such file or directory", "training_metrics.png.tmp.png")
    monkeypatch.setattr(plotting, "plot_run", broken)
    out = tmp_path / "run"
    assert ppo.main(args_for(tiny, out, MAX_STEPS=3, PLOT_EVERY=1)) == 0
    printed = "".join(capsys.readouterr())
    assert printed.count("warning: the charts could not be redrawn (FileNotFoundError") == 1
    assert len(plotting_rows(out)) == 3 and (out / "policy").is_dir()


def test_a_fault_before_the_first_checkpoint_prints_no_resume_command(tiny, tmp_path, monkeypatch,
                                                                     capsys):
    """A fault inside the first update leaves no checkpoint: the run says to start again, and the
    command it prints does."""
    def update(self, *a, **k):
        self.updating = True
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    monkeypatch.setattr(ppo.PPOTrainer, "update", update)
    out = tmp_path / "run"
    assert ppo.main(args_for(tiny, out, MAX_STEPS=2)) == 1
    printed = "".join(capsys.readouterr())
    assert "--RESUME=True" not in printed and "No checkpoint was written yet" in printed, printed
    command = shlex.split(printed.split("start again with:\n", 1)[1].splitlines()[0])
    script = command.index(os.path.join(ROOT, "ppo.py"))  # pytest ran it: named absolute
    assert command[-1] == "--OVERWRITE=True" and command[script + 1:-1] == args_for(
        tiny, out, MAX_STEPS=2)
    monkeypatch.undo()
    assert ppo.main(command[script + 1:]) == 0  # the pasted command, in this process


# ---- 22. printed commands work when pasted -------------------------------------------------------
def test_the_printed_resume_command_works_pasted_where_the_user_ran(tiny, tmp_path):
    """Run from another folder, with ppo.py named by a relative path and an OUTPUT_DIR with a space
    and a quote in it: a reward server that dies at step 1 stops the run; the printed command,
    pasted into a shell in the same folder, resumes it to the end."""
    where = tmp_path / "work"
    where.mkdir()
    script = os.path.relpath(os.path.join(ROOT, "ppo.py"), where)
    args = args_for(tiny, "my run's out", MAX_STEPS=2,
                    REWARD_MODEL="reward_fns:sentiment_with_faults")
    failed = subprocess.run([sys.executable, script, *args], cwd=where,
                            env={**ENV, "PPO_TEST_RAISE_AT": "3"}, capture_output=True, text=True)
    assert failed.returncode == 1, failed.stderr[-3000:]
    said = failed.stdout + failed.stderr
    command = said.split("continue with:\n", 1)[1].splitlines()[0].strip()
    assert script in command and "--RESUME=True" in command, command
    resumed = subprocess.run(command, shell=True, cwd=where, env=ENV, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["step"] for r in plotting_rows(where / "my run's out")] == [0, 1]


# ---- 20. resume as a user expects ----------------------------------------------------------------
def test_resume_needs_only_the_folder_and_refuses_before_building(tiny, tmp_path, finished,
                                                                  monkeypatch, capsys):
    """`--OUTPUT_DIR=RUN --RESUME=True` resumes with the run's own settings, whatever config.py
    says; a setting that differs is refused before anything is built; memory settings and a moved
    dataset with the same rows are accepted, the former with one line."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    saved = out / "checkpoint" / "settings.json"  # as if the run had replaced an earlier one
    saved.write_text(json.dumps({**json.loads(saved.read_text()), "OVERWRITE": True}))
    monkeypatch.setattr("tasks.sentiment.build", lambda: pytest.fail("built before deciding"))
    assert ppo.main([f"--OUTPUT_DIR={out}", "--RESUME=True", "--LEARNING_RATE=1e-3"]) == 2
    assert_one_message(capsys.readouterr().err, 2, "LEARNING_RATE 0.0003 -> 0.001")
    moved = tmp_path / "elsewhere.jsonl"
    shutil.copy(tiny["prompts"], moved)
    assert ppo.main([f"--OUTPUT_DIR={out}", "--RESUME=True", "--MAX_STEPS=3",
                     "--MICRO_BATCH_SIZE=2", f"--DATASET={moved}"]) == 0
    printed = capsys.readouterr().out
    assert "notice: resuming with MICRO_BATCH_SIZE 4 -> 2: memory and devices only" in printed
    assert "config.py's MAX_STEPS" not in printed  # given: used
    assert [r["step"] for r in plotting_rows(out)] == [0, 1, 2]
    with open(out / "checkpoint" / "settings.json") as f:
        assert json.load(f)["ACTOR_MODEL"] == tiny["policy"]


def test_an_edited_answer_column_is_another_dataset(tiny, tmp_path, capsys):
    """The checkpoint fingerprints the columns a reward function reads: an edited answer is
    refused, an edited column no reward reads is not."""
    data = tmp_path / "qa.jsonl"

    def write(answers, notes):
        with open(tiny["prompts"]) as f:
            rows = [json.loads(line) for line in f]
        data.write_text("".join(json.dumps({**r, "answer": a, "note": n}) + "\n"
                                for r, a, n in zip(rows, answers, notes)))
    write(["yes"] * 8, ["n"] * 8)
    out = tmp_path / "run"
    args = args_for(tiny, out, REWARD_MODEL="reward_fns:answer_only", DATASET=str(data),
                    MAX_STEPS=1)
    assert ppo.main(args) == 0
    write(["yes"] * 8, ["edited"] * 8)
    resume = [f"--OUTPUT_DIR={out}", "--RESUME=True", "--MAX_STEPS=2"]
    assert ppo.main(resume) == 0
    write(["yes"] * 7 + ["no"], ["edited"] * 8)
    capsys.readouterr()
    assert ppo.main(resume[:2] + ["--MAX_STEPS=3"]) == 2
    assert_one_message(capsys.readouterr().err, 2,
                       "the same prompts, but the column 'answer' that the reward function reads "
                       "differs")


# ---- 17. settings without effect are said, settings not read are refused -------------------------
def test_settings_without_effect_are_said_at_start_up(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert ppo.main(args_for(tiny, out, MAX_STEPS=1, REWARD_LABEL="POSITIVE",
                             REWARD_MODEL="reward_fns:word_count", ENABLE_THINKING=True,
                             ROLLOUT_COPY=True, EVAL_DATASET=tiny["prompts"], EVAL_SAMPLES=1,
                             KL_COEF=0.0, KL_TARGET=6.0)) == 0
    notices = [line for line in capsys.readouterr().out.splitlines()
               if line.startswith("notice:")]
    assert len(notices) == 5, notices
    for expected in ("REWARD_LABEL='POSITIVE' has no effect: it picks the output of a reward model "
                     "with several, and REWARD_MODEL has reward functions only",
                     "ENABLE_THINKING=True has no effect: the prompts go through no chat template",
                     "ROLLOUT_COPY=True has no effect: the models compute in float32",
                     "KL_TARGET=6.0 has no effect with KL_COEF=0: the adaptive controller",
                     "holds only training prompts (DATASET's)"):
        assert any(expected in line for line in notices), (expected, notices)


def test_the_critics_settings_without_a_critic_are_said(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert ppo.main(args_for(tiny, out, MAX_STEPS=1, ALGORITHM="grpo", GROUP_SIZE=2, BATCH_SIZE=4,
                             MINI_BATCH_SIZE=None, GAMMA=0.9, CRITIC_LEARNING_RATE=0.01)) == 0
    notices = [line for line in capsys.readouterr().out.splitlines()
               if line.startswith("notice:")]
    assert notices == [f"notice: CRITIC_MODEL={tiny['policy']!r}, GAMMA=0.9, "
                       "CRITIC_LEARNING_RATE=0.01 have no effect: ALGORITHM='grpo' trains no "
                       "critic (they are PPO's)"], notices


def test_evaluate_refuses_a_setting_it_does_not_read_and_names_a_config_files(tiny, tmp_path,
                                                                              capsys):
    data = f"--DATASET={tiny['prompts']}"
    for arg, expected in (
            ("--EVAL_DATASET=data/eval_prompts.jsonl",
             "--EVAL_DATASET is not read by evaluate.py, which scores the policies it is given on "
             "the prompts of DATASET: give --DATASET='data/eval_prompts.jsonl'"),
            ("--LEARNING_RATE=1e-3", "--LEARNING_RATE is not read by evaluate.py"),
            ("--RESUME=True", "--RESUME is not read by evaluate.py")):
        assert evaluate_main([tiny["policy"], data, "--REWARD_MODEL=reward_fns:word_count",
                              arg]) == 2
        assert_one_message(capsys.readouterr().err, 2, expected)
    config = tmp_path / "train.py"
    config.write_text(f"EVAL_DATASET = {tiny['prompts']!r}\nLEARNING_RATE = 1e-3\n"
                      "RESUME = True\n")
    assert evaluate_main([tiny["policy"], str(config), "--REWARD_MODEL=reward_fns:word_count",
                          "--EVAL_SAMPLES=1", "--MAX_NEW_TOKENS=2", data]) == 0
    printed = capsys.readouterr().out
    assert "notice: evaluate.py does not read EVAL_DATASET, LEARNING_RATE, RESUME from the " \
           "config file" in printed, printed


# ---- 23. every script speaks in one line ---------------------------------------------------------
# (the script, its arguments, the exit code, the one line); each runs in this process through
# machinery/script.py, and those marked "process" as the command a user types
SCRIPT_CASES = [
    ("process", ["plotting.py", "{tmp}/blocked"], 1, r"IsADirectoryError: .*ppo_metrics.png"),
    ("plotting", ["{tmp}/nope"], 2, "is no folder"),
    ("plotting", ["{tmp}/empty", "{tmp}/nope"], 2, "usage: python plotting.py OUTPUT_DIR"),
    ("evaluate", ["{tiny_policy}", "--MAX_STEPS=3"], 2, "--MAX_STEPS is not read by evaluate"),
    ("process", ["bench/health.py", "report", "{tmp}/nope"], 2, r"no such run folder: '.*nope'"),
    ("bench.health", ["report", "{tmp}/empty"], 2, r"none of the 1 folder\(s\) holds a run"),
    ("bench.health", ["report", "{tmp}/no-config"], 2, "no config.json"),
    ("bench.health", ["check"], 2, "argument command: invalid choice: 'check'"),
    ("bench.real_model", ["decode", "--new-tokens=1"], 2, "--new-tokens must be at least 2"),
    ("bench.real_model", ["report", "--task=chess"], 2, "argument --task: invalid choice"),
    ("bench.arithmetic", ["report", "--seeds", "x"], 2, "invalid int value: 'x'"),
    ("bench.family", ["run", "--jobs=0"], 2, "--jobs must be at least 1"),
    ("bench.family", ["run", "--arms=ours-ppo,theirs"], 2, "--arms: unknown theirs"),
    ("bench.update_cost", ["memory", "--chunks"], 2, "expected at least one argument"),
    ("bench.speed", ["--warmup=-1"], 2, "--warmup must be at least 0"),
    ("process", ["bench/trl_runner.py", "grpo"], 2, "runs in a virtualenv with TRL"),
]


@pytest.mark.parametrize("how, argv, code, expected", SCRIPT_CASES,
                         ids=[f"{c[0]}-{'-'.join(c[1][:2])}" for c in SCRIPT_CASES])
def test_every_script_says_one_line(how, argv, code, expected, tiny, tmp_path, capsys):
    import importlib
    from machinery import script
    (tmp_path / "empty").mkdir()
    (tmp_path / "no-config").mkdir()
    (tmp_path / "no-config" / "metrics.jsonl").write_text('{"step": 0, "reward": 1}\n{"st')
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "metrics.jsonl").write_text('{"step": 0, "reward": 1}\n')
    (tmp_path / "blocked" / "ppo_metrics.png").mkdir()  # a folder where the chart goes
    argv = [a.format(tmp=tmp_path, tiny_policy=tiny["policy"]) for a in argv]
    if how == "process":
        done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=ENV, capture_output=True,
                              text=True, timeout=300)
        returned, said = done.returncode, done.stdout + done.stderr
    else:
        returned = script.run(importlib.import_module(how).main, argv)
        said = "".join(capsys.readouterr())
    assert returned == code, said[-3000:]
    assert_one_message(said, code, expected)
    assert sorted(os.listdir(tmp_path / "blocked")) == ["metrics.jsonl", "ppo_metrics.png"]
