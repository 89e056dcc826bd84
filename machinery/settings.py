"""Settings: what each constant of config.py accepts (its annotation there, read into a Kind),
config files, `--NAME=value` overrides, `--help`, the defaults an algorithm or a policy's size fills
in, the checks that involve several settings, and a resumed run's settings.

Every refusal is a Refusal whose message names the setting and says what to change; ppo.main prints
it as one line and exits with code 2 (`--DEBUG=True` shows the traceback). The algorithm's tables
(ppo.ALGORITHMS, ppo.LOSS_AGGREGATIONS) are passed in by the caller: this file does not import
ppo.py. Kept out of ppo.py as nanoGPT keeps its configurator out of train.py.
"""
import ast
import difflib
import importlib.util
import json
import math
import os
import re
from types import ModuleType, SimpleNamespace

import config

from .checkpoints import resume_checkpoint, saved_settings
from .models import load_model_config
from .rewards import is_reward_function, reward_names
from .script import Refusal, first_line


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


TRACKERS = {"none": None, "tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


SIMPLE_KINDS = {"bool": bool, "text": str, "modules": list, "names": "names", "numbers": "numbers",
                "label": "label"}


def kind_of(name, spec, tables):
    """A setting's annotation in config.py -> its Kind: "int >= 1", "float > 0", "int in [0, 9]",
    "float in (0, 1]", "float", "bool", "text", "names", "numbers", "label", "modules",
    "one of 'a', 'b'" or "one of ALGORITHMS" (a table of `tables`, by name), each perhaps followed
    by " or None" (None then means "off" or, for the settings ALGORITHMS fills in, "the algorithm's
    default")."""
    none = spec.endswith(" or None")
    text = spec[:-len(" or None")] if none else spec
    if text.startswith("one of "):
        rest = text[len("one of "):]
        choices = tables[rest] if rest in tables else ast.literal_eval(f"({rest},)")
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


def setting_kinds(tables):
    """What each constant of config.py accepts, read from its annotation there (the one place a
    setting is declared, with its default and its comment): name -> Kind. `tables`: ppo.py's
    ALGORITHMS and LOSS_AGGREGATIONS by name, whose keys are the choices of their settings."""
    tables = {**tables, "TRACKERS": TRACKERS}
    return {name: kind_of(name, spec, tables) for name, spec in config.__annotations__.items()}


def unknown_setting(name, defaults, where):
    close = difflib.get_close_matches(name.upper(), list(defaults), n=1)
    hint = f" Did you mean {where.format(close[0])}?" if close else \
        " See config.py for the settings."
    return Refusal(f"unknown setting {where.format(name)}.{hint}")


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
        raise Refusal(
            f"cannot read the config file {path!r} ({e.strerror}): give the path of a .py file of "
            f"settings such as configs/arithmetic_grpo.py.") from None
    namespace = {"__file__": os.path.abspath(path), "__name__": "__config__"}
    try:
        exec(compile(source, path, "exec"), namespace)
    except SyntaxError as e:
        raise Refusal(
            f"the config file {path!r} is not valid Python (line {e.lineno}: {e.msg}).") from None
    except (Exception, SystemExit) as e:
        raise Refusal(
            f"the config file {path!r} raised {type(e).__name__}: {first_line(e)}") from None
    settings = {k: v for k, v in namespace.items()
                if not k.startswith("_") and not isinstance(v, ModuleType)}
    for name in settings:
        if name not in defaults:
            error = unknown_setting(name, defaults, f"{{}} in {path}")
            raise Refusal(f"{error} A helper of the file's own is named with a leading "
                              f"underscore (_{name}).")
    return settings


def parse_overrides(argv, defaults, kinds):
    """`--NAME=value` pairs -> dict, each value read as its setting's kind (true/false/none in any
    case)."""
    overrides, given = {}, {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise Refusal(
                f"cannot read argument {arg!r}: write settings as --NAME=value, e.g. "
                "--BATCH_SIZE=16, and a config file as a path ending in .py")
        name, value = arg[2:].split("=", 1)
        if name not in defaults:
            raise unknown_setting(name, defaults, "--{}")
        # which one was meant is a guess: the last one silently winning is a surprise
        if name in overrides:
            raise Refusal(
                f"--{name} is given twice ({given[name]!r} and {value!r}): give it once.")
        given[name] = value
        overrides[name] = kinds[name].parse(value) if name in kinds else value
    return overrides


def merge_settings(*lists):
    """ppo.py's command-line arguments from several lists, a later --NAME=value replacing an earlier
    one of the same name in its place: for scripts that build ppo.py's command lines from a base and
    a variant (the command line itself refuses a setting given twice)."""
    merged = {}
    for args in lists:
        merged.update((a.split("=", 1)[0], a) for a in args)
    return list(merged.values())


def check_types(settings, kinds):
    """Each setting against its kind (setting_kinds), before anything else reads it."""
    for name, value in settings.items():
        message = kinds[name].problem(name, value) if name in kinds else \
            f"{name} in config.py says nothing of what it accepts: annotate it, as the others " \
            f"are (e.g. {name}: \"int >= 1\" = 4)"
        if message:
            raise Refusal(message)


def settings_help(config_module, tables):
    """`python ppo.py --help`: every setting of config.py, grouped by its sections, with its default
    value, what it accepts (its annotation) and its comment (beside it or just above), read from
    config.py itself: the one place a setting is declared."""
    lines = [
        "usage: python ppo.py [CONFIG.py ...] [--NAME=value ...]  (config.py's settings, then the "
        "config files', then the command line's)"]
    kinds = setting_kinds(tables)
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
            elif setting and setting.group(1) in kinds:
                name, comment = setting.group(1), setting.group(2) or " ".join(above)
                value = getattr(config_module, name)
                kind = kinds[name].describe()
                lines.append(f"  --{name}={value!r}  ({kind})\n      {comment}")
            above = []
    return "\n".join(lines)


def load_config(argv, tables, log=None):
    """The UPPER_CASE constants of config.py, then those of any config file named in argv (a path
    ending in .py), then the --NAME=value overrides, each checked against its kind
    (setting_kinds(tables)), and each None that stands for "the algorithm's default" resolved, as a
    namespace (printed at start and saved as config.json). With RESUME=True the run's own saved
    settings take config.py's place (resumed_settings), before anything is built. `log` says the
    notices of a resume."""
    defaults, kinds = config_defaults(), setting_kinds(tables)
    from_files, from_command_line = given_settings(argv, kinds, defaults)
    given = {**from_files, **from_command_line}
    settings = {**defaults, **given}
    check_types(settings, kinds)
    if settings["RESUME"]:
        settings = resumed_settings(settings, given, defaults, tables["ALGORITHMS"], log)
    return SimpleNamespace(**resolve_settings(settings, tables["ALGORITHMS"]))


def config_defaults():
    """config.py's settings as they are now: its UPPER_CASE constants."""
    return {k: v for k, v in vars(config).items() if k.isupper() and not k.startswith("_")}


def given_settings(argv, kinds, defaults=None):
    """(the settings the config files in argv set, in order, each later file's winning; the
    --NAME=value overrides), each a dict, as the user wrote them. nanoGPT-style: `python ppo.py
    configs/NAME.py --BATCH_SIZE=64`."""
    defaults = config_defaults() if defaults is None else defaults
    from_files = {}
    for path in filter(is_config_file, argv):
        from_files.update(read_config_file(path, defaults))
    return from_files, parse_overrides([a for a in argv if not is_config_file(a)], defaults, kinds)


def resolve_settings(settings, algorithms):
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
    for name, value in algorithms[settings["ALGORITHM"]].defaults.items():
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
    """LEARNING_RATE=None: TINY_LEARNING_RATE for a policy of fewer than TINY_PARAMETERS
    parameters (the embedded tasks' tiny models, trained from scratch); for a pretrained one (a hub
    id counts as one) PRETRAINED_LEARNING_RATE where each batch feeds several optimizer steps and
    ONE_UPDATE_LEARNING_RATE where it feeds one (one_update), each measured on SmolLM2-135M-Instruct
    (docs/benchmarks.md, "A pretrained model's learning rate")."""
    policy = settings["ACTOR_MODEL"]
    n = parameter_count(policy)
    if n < TINY_PARAMETERS if n is not None else embedded_task(policy) is not None:
        return TINY_LEARNING_RATE
    return ONE_UPDATE_LEARNING_RATE if one_update(settings) else PRETRAINED_LEARNING_RATE


def one_update(settings):
    """Whether each batch feeds exactly one optimizer step (PPO_EPOCHS = 1, one minibatch), as GRPO,
    DAPO and REINFORCE do by default: decides the pretrained learning rate (learning_rate_for) and
    whether the rollout skips the policy's forward (PPOTrainer.single_pass)."""
    return settings["PPO_EPOCHS"] == 1 and \
        settings["MINI_BATCH_SIZE"] >= settings["BATCH_SIZE"] * settings["GROUP_SIZE"]


def config_files(argv):
    """The config files named on the command line, in the order they apply."""
    return [a for a in argv if is_config_file(a)]


def default_minibatch(cfg, algorithm):
    """What MINI_BATCH_SIZE=None means for a critic-free algorithm (its traits, ppo.ALGORITHMS), in
    words: the whole batch, or a quarter of it for gspo and cispo."""
    default = algorithm.defaults.get("MINI_BATCH_SIZE")
    size = default(vars(cfg)) if callable(default) else default
    whole = cfg.BATCH_SIZE * cfg.GROUP_SIZE
    return "the whole batch of" if size == whole else f"a quarter ({size}) of the"


def check_settings(cfg, algorithm):
    """Checks that involve several settings (each one alone was checked by check_types);
    `algorithm`: ALGORITHM's traits (ppo.ALGORITHMS)."""
    def need(ok, message):
        if not ok:
            raise Refusal(message)

    need(not algorithm.groups or cfg.GROUP_SIZE >= 2,
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
         + ("" if algorithm.critic
            else f" (for {cfg.ALGORITHM}, MINI_BATCH_SIZE=None is "
                 f"{default_minibatch(cfg, algorithm)} BATCH_SIZE * GROUP_SIZE sequences)"))
    need(algorithm.surrogate != "plain" or one_update(vars(cfg)),
         f"ALGORITHM={cfg.ALGORITHM!r} takes one update on fresh samples (its loss has no ratio to "
         f"clip), so PPO_EPOCHS must be 1 and MINI_BATCH_SIZE the whole batch (got PPO_EPOCHS="
         f"{cfg.PPO_EPOCHS}, MINI_BATCH_SIZE={cfg.MINI_BATCH_SIZE}): leave both None")
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


# what only an algorithm with a critic reads (CRITIC_LEARNING_RATE apart: its None is resolved)
CRITIC_SETTINGS = ("CRITIC_MODEL", "CRITIC_MAX_GRAD_NORM", "VALUE_CLIP_RANGE", "GAMMA", "LAM",
                   "DEVICE_CRITIC")


def settings_without_effect(cfg, algorithm, chat_template, rollout_copy, prompts, eval_prompts):
    """One line for each setting that does nothing in this run's combination, said at start-up:
    REWARD_LABEL without a reward model of several outputs, ENABLE_THINKING=True where the chat
    template has no such switch (or none is used), KL_TARGET with KL_COEF=0, ROLLOUT_COPY=True
    where the copy would be the policy in its own dtype (`rollout_copy`: whether one is made),
    held-out prompts that are all training prompts, and the critic's settings set away from
    config.py's for an algorithm without a critic. `chat_template`: the policy's template text
    where prompts go through one."""
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
    if cfg.KL_TARGET is not None and cfg.KL_COEF == 0:
        lines.append(
            f"KL_TARGET={cfg.KL_TARGET!r} has no effect with KL_COEF=0: the adaptive controller "
            "(Ziegler et al.) scales KL_COEF, which stays 0; give KL_COEF its starting value")
    if cfg.ROLLOUT_COPY is True and not rollout_copy:
        lines.append(
            "ROLLOUT_COPY=True has no effect: the models compute in float32, so the copy would "
            "be the policy in its own dtype; the sampler runs the policy itself")
    if not algorithm.critic:
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


def resumed_settings(settings, given, defaults, algorithms, log=print):
    """RESUME=True: the run's own settings, from its checkpoint's settings.json, with what the
    config files and the command line set (`given`) applied only where it may change on resume
    (RESUMABLE_CHANGES; a memory setting is said in one line). Any other given setting that differs
    from the run's is refused, naming each; config.py's values are not read, and one line names
    those that would have changed the run. Reads nothing but files."""
    if settings["OVERWRITE"]:
        raise Refusal("RESUME=True and OVERWRITE=True contradict each other: set one of them.")
    out = os.path.expanduser(settings["OUTPUT_DIR"])
    checkpoint = resume_checkpoint(out, algorithms, log)
    saved = {k: v for k, v in saved_settings(checkpoint).items() if k in defaults}
    own = {**defaults, **saved}
    # each given setting resolved as the run would
    wanted = resolve_settings({**own, **given}, algorithms)
    changed = [f"{k} {own.get(k)!r} -> {wanted[k]!r}" for k in given
               if k not in RESUMABLE_CHANGES and wanted[k] != own.get(k)]
    if changed:
        raise Refusal(
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


def planned_steps(cfg, n_prompts):
    """MAX_STEPS, or NUM_EPOCHS passes over the prompts; the response budget (MAX_RESPONSES),
    when set, also ends the run and so sets the learning-rate schedule's length."""
    steps = cfg.MAX_STEPS or cfg.NUM_EPOCHS * n_prompts // cfg.BATCH_SIZE
    if cfg.MAX_RESPONSES is not None:
        steps = min(steps, -(-cfg.MAX_RESPONSES // (cfg.BATCH_SIZE * cfg.GROUP_SIZE)))
    return steps


def embedded_tasks(cfg, critic):
    """The embedded tasks (tasks.sentiment, tasks.arithmetic) whose models this run loads (the
    critic's only where the algorithm trains one): ppo.main builds them, once, before loading."""
    loaded = [cfg.ACTOR_MODEL] + ([cfg.CRITIC_MODEL] if critic else [])
    return {embedded_task(path) for path in loaded} - {None}
