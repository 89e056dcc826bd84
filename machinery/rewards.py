"""Rewards: reward models (with their own tokenizer, so the policy and the reward model need not
share a vocabulary) and reward functions (`module:function`, called as TRL's GRPOTrainer calls
them), each checked before any weight loads, and the Scorer that sums them with their weights."""
import importlib
import inspect
import os

import numpy as np
import torch

from .data import conversation, prompt_text
from .distributed import no_grad_for
from .models import (check_tokenizer_files, disable_dropout, load_model_config, load_tokenizer,
                     no_dropout)
from .script import Refusal, first_line


class RewardError(RuntimeError):
    """The reward function raised or returned the wrong number of values: the run stops, after
    saving."""


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


def load_reward_function(name, setting="REWARD_MODEL"):
    """module:function -> the function. Any error while importing (a syntax error, an exception
    raised at import, a relative or empty module name) is a refusal naming the module."""
    module_name, _, function_name = name.partition(":")
    if not module_name or not function_name or module_name.startswith("."):
        raise Refusal(
            f"{setting}={name!r}: write a reward function as module:function, with an absolute "
            f"module name importable from here, e.g. my_rewards:score")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as e:  # str() of a SyntaxError names the file and line
        raise Refusal(f"{setting}={name!r}: cannot import {module_name} ({type(e).__name__}: "
                      f"{first_line(e)}). A reward function is given as module:function, the "
                      "module importable from here.") from None
    fn = getattr(module, function_name, None)
    if fn is None:
        raise Refusal(
            f"{setting}={name!r}: module {module_name} ({getattr(module, '__file__', '?')}) has "
            f"no {function_name}.")
    if not callable(fn):
        raise Refusal(
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
        raise Refusal(
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
    raise Refusal(f"REWARD_LABEL={label!r} is none of REWARD_MODEL={name!r}'s outputs "
                      f"({', '.join(map(repr, labels)) or n}): give one of their names or indices.")


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
                raise Refusal(
                    f"REWARD_MODEL={name!r} requires {', '.join(map(repr, missing))}, which "
                    f"{setting} has no column for (its other columns: {sorted(cols) or 'none'}): "
                    "give the parameter a default, or use a dataset with that column.")
        rows = {k: v[:2] for k, v in (columns or {}).items()}
        try:  # one cheap call now, so a broken function fails before any model loads
            scores = call_reward_function(fn, prompts[:2], [" a test response."] * len(prompts[:2]),
                                          rows)
        except RewardError as e:
            raise Refusal(f"REWARD_MODEL={name!r} failed on a test call: {e}") from None
        if not torch.isfinite(scores).all():
            raise Refusal(
                f"REWARD_MODEL={name!r} returned {scores.tolist()} on a test call with "
                f"prompts {prompts[:2]!r}: rewards must be finite numbers.")
    else:
        reward = load_model_config("REWARD_MODEL", name)
        archs = reward.architectures or []
        if type(reward) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING or \
                (archs and not any(a.endswith("ForSequenceClassification") for a in archs)):
            raise Refusal(
                f"REWARD_MODEL={name!r} is a {', '.join(archs) or reward.model_type}, not a "
                "sequence classifier: give a reward-model folder (config.json architectures "
                "*ForSequenceClassification) or a Python function as module:function.")
        reward_label(name, reward, label)
        check_tokenizer_files("REWARD_MODEL", name)


def reward_columns(reward_model, columns):
    """The dataset columns (name -> values) that the reward functions of REWARD_MODEL read: those
    their parameters name, every one for a function that takes **kwargs."""
    read = {}
    for name in reward_names(reward_model):
        if is_reward_function(name):
            read.update(columns_for(load_reward_function(name), columns))
    return read


class RewardModel:
    """Scores (prompt, response) text with a sequence classifier and its own tokenizer: a text pair
    for encoders such as DeBERTa (the OpenAssistant reward models' format), the chat template where
    the tokenizer has one. Text longer than the model reads (the tokenizer's model_max_length or the
    config's max_position_embeddings) loses the start of its prompt: the response, the part being
    scored, stays whole. Only a response that alone exceeds the limit is cut, from its start.
    `truncated` counts the rows cut in the last call."""

    def __init__(self, name, device, dtype, shard=None, label=None):
        from transformers import AutoModelForSequenceClassification
        self.tokenizer = load_tokenizer(name, "REWARD_MODEL")
        self.tokenizer.truncation_side = "left"
        self.model = disable_dropout(AutoModelForSequenceClassification.from_pretrained(
            name, dtype=dtype, **no_dropout(
                name))).to("cpu" if shard else device).eval().requires_grad_(False)
        if shard:  # shard(model) moves it to the device in shards
            shard(self.model)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        limits = [n for n in (self.tokenizer.model_max_length,
                              getattr(self.model.config, "max_position_embeddings",
                                                                        None)) if n and n < 10 ** 6]
        self.device, self.max_length, self.truncated = device, min(limits, default=None), 0
        # the output that is the reward (REWARD_LABEL)
        self.label = reward_label(name, self.model.config, label)

    def encode(self, prompts, responses, **kwargs):
        """A chat template receives the whole conversation with the response as the assistant's
        turn; a pair encoder (DeBERTa) the prompt's text (prompt_text) and the response."""
        tok = self.tokenizer
        if tok.chat_template:
            texts = [
                tok.apply_chat_template(conversation(p) + [{"role": "assistant", "content": r}],
                                        tokenize=False)
                for p, r in zip(prompts, responses)]
            return tok(texts, add_special_tokens=False, **kwargs)
        return tok([prompt_text(p) for p in prompts], responses, **kwargs)

    def fit(self, prompt, response, length):
        """The prompt shortened from its start until the pair's `length` fits max_length: a
        conversation first loses its oldest messages, then text loses as many of its first tokens as
        the pair is too long (a few more when decoding and re-encoding shifts a token boundary).
        Empty when the response alone is too long."""
        messages = not isinstance(prompt, str)
        for _ in range(4 + (len(prompt) if messages else 0)):
            if length <= self.max_length:
                break
            if messages and len(prompt) > 1:
                prompt = prompt[1:]
            else:
                text = prompt[0]["content"] if messages else prompt
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                text = "" if length - self.max_length >= len(ids) else self.tokenizer.decode(
                    ids[length - self.max_length:])
                prompt = [{**prompt[0], "content": text}] if messages else text
                if not text:
                    break
            length = len(self.encode([prompt], [response])["input_ids"][0])
        return prompt

    def __call__(self, prompts, responses, columns=None):
        batch = self.encode(prompts, responses, padding=True, return_tensors="pt")
        lengths = batch["attention_mask"].sum(1).tolist()
        long = [i for i, n in enumerate(lengths) if self.max_length is not None
                and n > self.max_length]
        self.truncated = len(long)
        if long:  # encoded a second time only when some row is too long
            prompts = list(prompts)
            for i in long:
                prompts[i] = self.fit(prompts[i], responses[i], lengths[i])
            batch = self.encode(prompts, responses, padding=True, truncation=True,
                                max_length=self.max_length,
                                return_tensors="pt")  # cuts only an over-long response
        with no_grad_for(self.model):
            return self.model(**batch.to(self.device)).logits[:, self.label].float()  # (B,)


def load_scorer(name, device, dtype, shard=None, label=None):
    """One REWARD_MODEL name -> a callable(prompts, responses, columns) -> (B,) float scores: a
    sequence classifier (sharded by shard(model) where given) or a user function given as
    module:function. NaN/inf pass through to the trainer's non-finite guard."""
    if is_reward_function(name):
        fn = load_reward_function(name)
        return lambda prompts, responses, columns=None: call_reward_function(
            fn, prompts, responses, columns)
    return RewardModel(name, device, dtype, shard, label)


class Scorer:
    """REWARD_MODEL's scorers with REWARD_WEIGHTS: the reward is the weighted sum of their scores
    (TRL's GRPO sums its reward_funcs with reward_weights the same way). scorer(prompts, responses,
    columns) -> the (B,) reward and the (B, number of scorers) scores it sums; `names` are the
    scorers' metric names, `truncated` counts the rows cut to fit the reward models in the last
    call."""

    def __init__(self, names, weights, device, dtype, shard=None, label=None):
        names = reward_names(names)
        self.names, self.weights = reward_metric_names(
            names), torch.tensor(weights or [1.0] * len(names))
        self.parts = [load_scorer(name, device, dtype, shard, label) for name in names]
        self.truncated = 0

    def models(self):
        """The reward models among the scorers, by metric name."""
        return {f"reward model {n}": p.model for n, p in zip(self.names, self.parts)
                if isinstance(p, RewardModel)}

    def __call__(self, prompts, responses, columns=None):
        # (B, S)
        parts = torch.stack(
            [part(prompts, responses, columns).float().cpu() for part in self.parts], 1)
        self.truncated = sum(getattr(part, "truncated", 0) for part in self.parts)
        return (parts * self.weights).sum(1), parts


def non_finite_reward(scores, prompts, responses, ranks):
    """Why a step must not update (a NaN/inf reward on any rank, named with its prompt and
    response), or None. Every rank gets the same answer."""
    bad = None if torch.isfinite(scores).all() else int((~torch.isfinite(scores)).nonzero()[0])
    reason = None if bad is None else (f"reward {scores[bad].item()} for prompt {prompts[bad]!r}, "
                                       f"response {responses[bad]!r}")
    if not ranks.active or not ranks.any(reason is not None):
        return reason
    return ranks.first_object(reason)
