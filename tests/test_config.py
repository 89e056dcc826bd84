import os

import pytest

import ppo
from machinery import preflight
from conftest import ROOT


def test_overrides_parse_literals_and_strings():
    cfg = ppo.load_config(["--BATCH_SIZE=16", "--LEARNING_RATE=1e-5", "--KL_TARGET=None",
                           "--DEVICE_POLICY=cuda:0", "--OUTPUT_DIR=runs/x", "--CHAT_TEMPLATE=False"])
    assert cfg.BATCH_SIZE == 16 and cfg.LEARNING_RATE == 1e-5 and cfg.KL_TARGET is None
    assert cfg.DEVICE_POLICY == "cuda:0" and cfg.OUTPUT_DIR == "runs/x" and cfg.CHAT_TEMPLATE is False
    assert ppo.load_config([]).BATCH_SIZE == __import__("config").BATCH_SIZE


def test_unknown_setting_names_the_closest_one():
    with pytest.raises(ppo.ConfigError, match="unknown setting --LEARNIG_RATE. Did you mean --LEARNING_RATE"):
        ppo.load_config(["--LEARNIG_RATE=1e-5"])
    with pytest.raises(ppo.ConfigError, match="--NAME=value"):
        ppo.load_config(["BATCH_SIZE=3"])


@pytest.mark.parametrize("args,message", [
    (["--BATCH_SIZE=6", "--MINI_BATCH_SIZE=4"], r"BATCH_SIZE \(6\) must be divisible by MINI_BATCH_SIZE \(4\)"),
    (["--MINI_BATCH_SIZE=8", "--MICRO_BATCH_SIZE=3"], r"MINI_BATCH_SIZE \(8\) must be divisible by MICRO_BATCH_SIZE"),
    (["--TEMPERATURE=0"], "TEMPERATURE must be a number > 0, got 0.0"),
    (["--KL_ESTIMATOR=k2"], "KL_ESTIMATOR must be one of 'k1', 'k3' or None, got 'k2'"),
    (["--DTYPE=fp8"], "DTYPE must be"),
    (["--MAX_STEPS=0"], "MAX_STEPS must be an integer >= 1 or None, got 0"),
    (["--LAM=1.5"], r"LAM must be a number in \[0, 1\], got 1.5"),
])
def test_settings_that_cannot_work_are_refused(args, message):
    with pytest.raises(ppo.ConfigError, match=message):
        ppo.check_settings(ppo.load_config(args))


def test_device_resolution():
    cfg = ppo.load_config([])
    assert {k: str(v) for k, v in ppo.resolve_devices(cfg, 0).items()} == dict.fromkeys(
        ["policy", "ref", "critic", "reward"], "cpu")
    assert {k: str(v) for k, v in ppo.resolve_devices(cfg, 1).items()} == dict.fromkeys(
        ["policy", "ref", "critic", "reward"], "cuda:0")
    assert {k: str(v) for k, v in ppo.resolve_devices(cfg, 2).items()} == {
        "policy": "cuda:0", "ref": "cuda:0", "critic": "cuda:1", "reward": "cuda:1"}
    split = ppo.load_config(["--DEVICE_CRITIC=cpu"])
    assert str(ppo.resolve_devices(split, 1)["reward"]) == "cpu"  # the reward model follows the critic
    with pytest.raises(ppo.ConfigError, match="DEVICE_CRITIC='cuda:1' but this machine has 1 GPU"):
        ppo.resolve_devices(ppo.load_config(["--DEVICE_CRITIC=cuda:1"]), 1)
    with pytest.raises(ppo.ConfigError, match="not a device name"):
        ppo.resolve_devices(ppo.load_config(["--DEVICE_POLICY=gpu0"]), 0)


def test_help_lists_every_setting_with_its_comment_grouped_as_in_config_py(capsys):
    import re
    assert ppo.main(["--help"]) == 0
    shown = capsys.readouterr().out
    with open(os.path.join(ROOT, "config.py")) as f:
        source = f.read()
    settings = re.findall(r"^([A-Z][A-Z0-9_]*) = .+?\s+# (.+)$", source, re.M)
    assert len(settings) == len(preflight.SETTINGS)  # every setting has its one-line comment
    for name, comment in settings:
        assert f"  --{name}=" in shown and comment in shown, name
    sections = re.findall(r"^# ---- (.+?) -+$", source, re.M)
    assert [s for s in sections if f"\n{s}:\n" in shown] == sections
    assert shown.index("--ALGORITHM=") < shown.index("--ACTOR_MODEL=") < shown.index("--EVAL_SAMPLES=")
