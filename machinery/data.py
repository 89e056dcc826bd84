"""Data: the prompts and their other columns, loaded with `datasets` and checked (a missing file,
column or split, an empty or malformed prompt, too few rows), prompts as the policy sees them
(SYSTEM_PROMPT, the chat template), the prompt stream, and what a checkpoint records of the data."""
import json
import os
from functools import partial


from .models import check_hub_id, is_hub_id
from .script import Refusal, first_line


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
        raise Refusal(f"{setting}={path!r}: no such file or folder.")
    if hub:
        check_hub_id(setting, path, "dataset")
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise Refusal(
            f"{setting}={path!r} is an empty file: write one {{\"{key}\": \"...\"}} line per "
            "prompt.")
    try:
        if os.path.isfile(path):
            if ext not in builders:
                raise Refusal(
                    f"{setting}={path!r}: unknown file type {ext!r}; use .jsonl, .json, .csv or "
                    f".parquet (each may be compressed: .gz, .bz2, .xz, .zst).")
            # one file is one split; EVAL_SPLIT's default "test" is for hubs
            if not held_out and split != "train":
                raise Refusal(
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
    except Refusal:
        raise
    except Exception as e:
        # the innermost error names the real problem
        while e.__cause__ is not None or e.__context__ is not None:
            e = e.__cause__ or e.__context__
        reason = first_line(e) or type(e).__name__
        if hub:
            raise Refusal(
                f"{setting}={path!r} is neither a local file or folder nor loadable from the hub "
                f"({reason}).") from None
        raise Refusal(
            f"{setting}={path!r} could not be read ({reason}). Expected one {key!r} field per row, "
            f"e.g. a .jsonl file of lines like {{\"{key}\": \"...\"}}.") from None
    if held_out and cfg.EVAL_MAX_PROMPTS is not None:
        ds = ds.select(range(min(len(ds), cfg.EVAL_MAX_PROMPTS)))
    if len(ds) == 0:
        raise Refusal(
            f"{setting}={path!r} has no rows: write one {{\"{key}\": \"...\"}} line per prompt.")
    if key not in ds.column_names:
        raise Refusal(f"{setting}={path!r} has no column PROMPT_KEY={key!r}; its columns are "
                          f"{ds.column_names}. Set --PROMPT_KEY to the one holding the prompts.")
    prompts = ds[key]
    problems = [(i, prompt_problem(p)) for i, p in enumerate(prompts)]
    bad = [(i, problem) for i, problem in problems if problem]
    if bad:
        raise Refusal(
            f"{setting}={path!r}: {len(bad)} row(s) have an unusable {key!r} (first at row "
            f"{bad[0][0]}: {bad[0][1]}); a prompt is text or a list of messages "
            f"[{{'role': 'user', 'content': '...'}}] ending with the user's turn.")
    if len(prompts) < min_prompts:
        raise Refusal(
            f"{setting}={path!r} has {len(prompts)} prompts, fewer than BATCH_SIZE "
            f"({min_prompts}): lower BATCH_SIZE or add prompts.")
    return prompts, {c: ds[c] for c in ds.column_names if c != key}


def check_vocabulary(cfg, tokenizer):
    """The policy's tokenizer must be its own: a token id past the model's embeddings (another
    model's tokenizer saved beside these weights) fails only inside the first forward, with an
    IndexError."""
    from transformers import AutoConfig
    size = getattr(AutoConfig.from_pretrained(cfg.ACTOR_MODEL), "vocab_size", None)
    if isinstance(size, int) and len(tokenizer) > size:
        raise Refusal(
            f"ACTOR_MODEL={cfg.ACTOR_MODEL!r}: its tokenizer has {len(tokenizer)} tokens, more "
            f"than the {size} the model embeds (vocab_size), so it is another model's tokenizer: "
            "save this model's own tokenizer beside its weights.")


def check_positions(cfg, critic, prompt_ids):
    """The longest sequence a step makes (the longest tokenised prompt, at most MAX_PROMPT_LENGTH
    tokens, plus MAX_NEW_TOKENS) must fit the positions of the policy and the critic, which read the
    same tokens: past them a model with learned positions fails with an IndexError, and one with
    rotary positions extrapolates silently."""
    from transformers import AutoConfig
    longest = max(map(len, prompt_ids), default=0) + cfg.MAX_NEW_TOKENS
    models = [("ACTOR_MODEL", cfg.ACTOR_MODEL)] + ([("CRITIC_MODEL", cfg.CRITIC_MODEL)]
                                                    if critic else [])
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
            raise Refusal(
                f"the longest prompt ({prompt} tokens, MAX_PROMPT_LENGTH={cfg.MAX_PROMPT_LENGTH}) "
                f"plus MAX_NEW_TOKENS={cfg.MAX_NEW_TOKENS} is {longest} tokens, more than the "
                f"{limit} positions {setting}={name!r} has: lower {' or '.join(fixes)}.")


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
        raise Refusal(f"{path} is damaged: resume from a copy of the run, or start again with "
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
    raise Refusal(
        f"RESUME=True but DATASET is not what the checkpoint was trained on ({change}): resume "
        f"with the run's own data, or start a new run in another --OUTPUT_DIR.")


def conversation(prompt, system_prompt=None):
    """A prompt as a list of messages: text becomes the user's turn; system_prompt goes first unless
    the conversation has a system message of its own."""
    messages = [
        {"role": "user", "content": prompt}] if isinstance(
            prompt, str) else [dict(m) for m in prompt]
    if system_prompt is not None and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def as_seen(prompt, system_prompt=None):
    """A dataset's prompt as the policy sees it and the scorers receive it: unchanged, or with
    SYSTEM_PROMPT, a conversation that starts with it."""
    return prompt if system_prompt is None else conversation(prompt, system_prompt)


def prompt_text(prompt):
    """The text of a prompt for a reward model without a chat template (a text-pair encoder such as
    the OpenAssistant DeBERTa): a conversation's user and assistant turns, one paragraph each."""
    return prompt if isinstance(
        prompt, str) else "\n\n".join(m["content"] for m in prompt if m["role"] != "system")


def tokenize_prompts(tokenizer, prompts, chat_template, max_length, system_prompt=None,
                     enable_thinking=False, source=None):
    """Tokenise every prompt once, through the tokenizer's chat template when chat_template is True,
    or is "auto" and the tokenizer has one (each prompt as a conversation, system_prompt first).
    Over-long prompts keep their last max_length tokens (the end of a prompt is what the response
    continues). Returns (token-id lists, truncated flags). A template that raises on a prompt is a
    Refusal naming SYSTEM_PROMPT where it refuses the system turn, else the prompt's row of
    `source` ("DATASET='data.jsonl', column 'prompt'")."""
    has_template = bool(tokenizer.chat_template)
    if chat_template is True and not has_template:
        raise Refusal(
            "CHAT_TEMPLATE=True but the tokenizer of ACTOR_MODEL has no chat template: "
            "set CHAT_TEMPLATE to 'auto' or False.")
    if uses_chat_template(tokenizer, chat_template):
        # enable_thinking (ENABLE_THINKING) is Qwen3's switch: False adds an empty think block;
        # other templates ignore it.
        def render(messages):
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                 tokenize=False, enable_thinking=enable_thinking)
        texts = []
        for row, prompt in enumerate(prompts):
            messages = conversation(prompt, system_prompt)
            try:
                texts.append(render(messages))
            except Exception as e:
                raise template_refusal(render, messages, row, e, system_prompt, source) from None
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    else:
        why = "has no chat template" if not has_template else \
            "has its chat template turned off (CHAT_TEMPLATE=False)"
        if system_prompt is not None:
            raise Refusal(
                f"SYSTEM_PROMPT is set, but ACTOR_MODEL's tokenizer {why}, which is what places a "
                "system message: write the instruction into the prompts instead, or use a model "
                "with a chat template.")
        if any(not isinstance(p, str) for p in prompts):
            raise Refusal(
                "the prompts are conversations (lists of messages), but ACTOR_MODEL's tokenizer "
                f"{why}, which is what turns them into text: give text prompts, or a model with a "
                "chat template.")
        ids = tokenizer(list(prompts))["input_ids"]
    return [x[-max_length:] for x in ids], [len(x) > max_length for x in ids]


def uses_chat_template(tokenizer, chat_template):
    """Whether prompts go through the tokenizer's chat template: CHAT_TEMPLATE True, or "auto" and
    the tokenizer has one."""
    return bool(tokenizer.chat_template) and chat_template in (True, "auto")


def template_refusal(render, messages, row, error, system_prompt, source):
    """The Refusal for a chat template that raised on one prompt's messages: SYSTEM_PROMPT's
    fault when the prompt renders without it, else the row's."""
    reason = f"{type(error).__name__}: {first_line(error)}"
    if system_prompt is not None and messages[0] == {"role": "system", "content": system_prompt}:
        try:
            render(messages[1:])
        except Exception:
            pass
        else:
            return Refusal(
                f"SYSTEM_PROMPT={system_prompt!r}: ACTOR_MODEL's chat template refuses a system "
                f"turn ({reason}): set --SYSTEM_PROMPT=None and write the instruction into the "
                "prompts, or use a model whose template takes a system message.")
    where = f"{source}, row {row}" if source else f"prompt {row}"
    return Refusal(
        f"{where}: ACTOR_MODEL's chat template cannot render it ({reason}): fix that row (roles "
        "the template accepts, in the order it accepts), or give text prompts with "
        "--CHAT_TEMPLATE=False.")


def load_datasets(cfg):
    """(prompts, columns, held-out prompts, their columns): DATASET's prompts as the policy sees
    them (as_seen: with SYSTEM_PROMPT) and its other columns, at least BATCH_SIZE rows;
    EVAL_DATASET's the same way, or None twice."""
    prompts, columns = load_prompts(cfg, min_prompts=cfg.BATCH_SIZE)
    eval_prompts = eval_columns = None
    if cfg.EVAL_DATASET is not None:
        eval_prompts, eval_columns = load_prompts(cfg, held_out=True)
        eval_prompts = [as_seen(p, cfg.SYSTEM_PROMPT) for p in eval_prompts]
    return [as_seen(p, cfg.SYSTEM_PROMPT) for p in prompts], columns, eval_prompts, eval_columns


def tokenize_datasets(tokenizer, cfg, prompts, eval_prompts):
    """(token ids of each prompt, whether each was cut to MAX_PROMPT_LENGTH, the held-out prompts'
    ids or None): every prompt through the chat template (tokenize_prompts), whose failure names
    the dataset and row."""
    tokenize = partial(tokenize_prompts, tokenizer, chat_template=cfg.CHAT_TEMPLATE,
                       max_length=cfg.MAX_PROMPT_LENGTH, system_prompt=cfg.SYSTEM_PROMPT,
                       enable_thinking=cfg.ENABLE_THINKING)
    ids, truncated = tokenize(prompts, source=f"DATASET={cfg.DATASET!r}, column "
                                              f"{cfg.PROMPT_KEY!r}")
    eval_ids = None if eval_prompts is None else tokenize(
        eval_prompts, source=f"EVAL_DATASET={cfg.EVAL_DATASET!r}, column {cfg.PROMPT_KEY!r}")[0]
    return ids, truncated, eval_ids
