"""The sampler (our own KV-cached loop with inverse-CDF draws from per-row random streams), prompts
as token ids, the endless prompt stream, rollouts as padded batches, and evaluation's sampling and
scoring."""
import numpy as np
import torch
from importlib.metadata import version

from packaging.version import Version

from .distributed import no_grad_for

from .models import autocast


# The KV cache's keyword, in a forward's arguments and in its output: transformers 5.24 renamed
# `past_key_values` to `cache` (5.16-5.23 take `cache=` into **kwargs and ignore it). One name,
# read from the installed version (without importing transformers, a second at start-up).
RENAMED = Version(version("transformers")) >= Version("5.24.0.dev0")
CACHE = "cache" if RENAMED else "past_key_values"


def position_ids_from_mask(attention_mask):
    """Positions that skip left padding, as generation uses them: [0 0 1 1 1] -> [0 0 0 1 2]."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


def draw_tokens(probs, u):
    """Inverse-CDF sampling: for each row, the first token whose cumulative probability exceeds u *
    total. (B, V) probabilities, (B,) uniforms in [0, 1) -> (B,) token ids, distributed as
    torch.multinomial's. Drawing from explicit uniforms lets a row's sample depend on its own
    uniform only, not on which rows share its batch."""
    cdf = probs.cumsum(-1)  # (B, V)
    # scaled by the total: rounding cannot overshoot
    target = (u.to(cdf.device, cdf.dtype) * cdf[:, -1])[:, None]
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp(max=probs.shape[-1] - 1)


def uniforms_for(seed, position, n_rows, rows):
    """The uniforms for decoding step t of the rollout that began at prompt-stream position
    `position`: one per row of the whole (all ranks') batch of n_rows, of which this process takes
    `rows` (a slice or a list). A pure function of (seed, position, t), so a run's samples do not
    depend on how many processes share the batch, and a resumed run draws what the uninterrupted one
    would have."""
    # numpy's SeedSequence mixes all three numbers (torch's CPU generator keeps 32 bits of a seed)
    def uniforms(t):
        return torch.from_numpy(
            np.random.default_rng([seed, position, t]).random(n_rows, dtype=np.float32))[rows]
    return uniforms


# COMPILE_DECODE asks whether every row has ended once every this many decoding steps (a host
# sync); the default sampler asks after each
SYNC_EVERY = 8


def draw_step(logits, u, finished, temperature, eos_ids, pad_id):
    """One decoding step's draw: softmax(logits / temperature) sampled by inverse CDF with uniforms
    u, pad_id for rows that had already ended. (B, V), (B,), (B,) -> the (B,) tokens, their (B,)
    log-probs and the rows ended after this step."""
    logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, V)
    token = draw_tokens(logp_all.exp(), u)  # (B,)
    token = torch.where(finished, torch.full_like(token, pad_id), token)
    return token, logp_all.gather(1, token[:, None]).squeeze(1), finished | torch.isin(token,
                                                                                      eos_ids)


def sample(model, input_ids, attention_mask, max_new_tokens, temperature, eos_ids, pad_id,
           uniforms=None, all_done=None, compiled=False):
    """Ancestral sampling from softmax(logits / temperature) with a KV cache; no top-k, top-p or
    penalties. Stops early once every row has produced an EOS; rows that ended are filled with
    pad_id. uniforms(t) -> (B,) gives decoding step t's random numbers (default: torch's global
    generator); all_done(finished) says whether to stop (default: every row has ended; with a
    sharded model, every rank's rows, so that all run the same forwards). compiled (COMPILE_DECODE):
    decode_compiled, the same distribution and random numbers, not the same floats. (B, Tp), (B, Tp)
    -> response ids (B, Tr) and the sampling log-probs (B, Tr) (the rollout copy's, which the
    importance correction compares with the trained policy's)."""
    B, Tp = input_ids.shape
    uniforms = uniforms or (lambda t: torch.rand(B))
    all_done = all_done or (lambda finished: bool(finished.all()))
    eos_ids = eos_ids.to(input_ids.device)
    with no_grad_for(model):  # inference mode, or no_grad for a sharded model
        if compiled:
            return decode_compiled(model, input_ids, attention_mask, max_new_tokens, temperature,
                                   eos_ids, pad_id, uniforms, all_done)
        positions = position_ids_from_mask(attention_mask)  # (B, Tp)
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                    use_cache=True, logits_to_keep=1)
        logits, cache = out.logits[:, -1], getattr(out, CACHE)  # (B, V)
        next_position = positions[:, -1:] + 1  # (B, 1)
        finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
        tokens, logps = [], []
        for t in range(max_new_tokens):
            token, logp, finished = draw_step(logits, uniforms(t), finished, temperature, eos_ids,
                                              pad_id)
            tokens.append(token)
            logps.append(logp)
            if t == max_new_tokens - 1 or all_done(finished):
                break
            # Rows that ended keep running on pad tokens; their outputs are discarded and never
            # reach other rows.
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])],
                                       dim=1)
            logits = model(input_ids=token[:, None], attention_mask=attention_mask,
                           position_ids=next_position, use_cache=True,
                           **{CACHE: cache}).logits[:, -1]
            next_position = next_position + 1
        return torch.stack(tokens, 1), torch.stack(logps, 1)


def decode_compiled(model, input_ids, attention_mask, max_new_tokens, temperature, eos_ids, pad_id,
                    uniforms, all_done):
    """sample() with COMPILE_DECODE: a static KV cache of Tp + max_new_tokens positions whose mask
    covers the whole cache from the start (one shape for every step), and each decoding step -
    forward, temperature, log-softmax, the inverse-CDF draw, the EOS test - one compiled graph
    (decode_step). Every step's uniforms are made up front and moved to the device once; whether
    all rows have ended is asked every SYNC_EVERY steps, and the steps run past the last EOS (all
    rows padding) are cut off, so the tokens are the default sampler's from the same logits.
    Attention runs over the whole preallocated cache, its unwritten part masked, so the logits are
    not the default's floats, and a token drawn at a near-tie can differ."""
    from transformers import StaticCache
    B, Tp = input_ids.shape
    device = input_ids.device
    u = torch.stack([uniforms(t) for t in range(max_new_tokens)]).to(device)  # (Tr, B)
    positions = position_ids_from_mask(attention_mask)  # (B, Tp)
    cache = StaticCache(config=model.config, max_cache_len=Tp + max_new_tokens)
    attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, max_new_tokens)], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                   use_cache=True, logits_to_keep=1, **{CACHE: cache}).logits[:, -1]  # (B, V)
    token, logp, finished = draw_step(logits, u[0], torch.zeros(B, dtype=torch.bool,
                                                                device=device),
                                      temperature, eos_ids, pad_id)
    tokens, logps, step = [token], [logp], decode_step(model)
    next_position = positions[:, -1:] + 1  # (B, 1)
    for t in range(1, max_new_tokens):
        if t % SYNC_EVERY == 0 and all_done(finished):
            break
        # the graph's outputs live in its own buffers, overwritten by its next run: copied out
        token, logp, finished = (x.clone() for x in step(token[:, None], attention_mask,
                                                         next_position, cache, u[t], finished,
                                                         eos_ids, temperature, pad_id))
        tokens.append(token)
        logps.append(logp)
        next_position = next_position + 1
    tokens, logps = torch.stack(tokens, 1), torch.stack(logps, 1)
    is_eos = torch.isin(tokens, eos_ids)  # (B, n)
    if bool(is_eos.any(1).all()):  # every row ended: cut after the last row's first EOS
        width = int(is_eos.int().argmax(1).max()) + 1
        tokens, logps = tokens[:, :width], logps[:, :width]
    return tokens, logps


def decode_step(model):
    """model's whole decoding step with a static cache, compiled once per model by torch.compile
    (shapes fixed: a new batch size or cache length compiles again): the forward on the previous
    token and draw_step. On a GPU mode "reduce-overhead" records it as a CUDA graph: one launch
    per step instead of one per kernel, which is what bounds a small model's decoding. (B, 1) ids,
    (B, Tp + Tr) mask, (B, 1) positions, cache, (B,) uniforms, (B,) ended, EOS ids, temperature,
    pad id -> draw_step's (token, log-prob, ended)."""
    step = getattr(model, "_compiled_decode_step", None)
    if step is None:
        def forward(ids, mask, positions, cache, u, finished, eos_ids, temperature, pad_id):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                           use_cache=True, **{CACHE: cache}).logits[:, -1]
            return draw_step(logits, u, finished, temperature, eos_ids, pad_id)
        on_gpu = next(model.parameters()).device.type == "cuda"
        step = torch.compile(forward, mode="reduce-overhead" if on_gpu else None, dynamic=False)
        model._compiled_decode_step = step
    return step


def eos_token_ids(tokenizer, model_name):
    """The tokenizer's EOS plus any the checkpoint's generation_config lists (Qwen3 chat models end
    a turn with <|im_end|> and also stop at <|endoftext|>), as a tensor for torch.isin."""
    from transformers import GenerationConfig
    ids = {tokenizer.eos_token_id}
    try:
        extra = GenerationConfig.from_pretrained(model_name).eos_token_id
    except OSError:  # no generation_config.json
        extra = None
    ids |= set(extra if isinstance(extra, list) else [] if extra is None else [extra])
    return torch.tensor(sorted(ids))


def left_pad(sequences, pad_id):
    """Token lists -> (B, Tp) ids and attention mask, padded on the left so every prompt ends at
    column Tp-1."""
    Tp = max(map(len, sequences))
    ids = torch.tensor([[pad_id] * (Tp - len(s)) + s for s in sequences])  # (B, Tp)
    mask = torch.tensor([[0] * (Tp - len(s)) + [1] * len(s) for s in sequences])  # (B, Tp)
    return ids, mask


def stream_indices(start, n, num_prompts, seed):
    """Positions start .. start+n-1 of an endless stream of prompt indices. Each pass over the
    dataset is a fresh permutation seeded by (seed, pass), so the data a run sees depends only on
    its position in the stream."""
    out, perms = [], {}
    for position in range(start, start + n):
        epoch, offset = divmod(position, num_prompts)
        if epoch not in perms:
            perms[epoch] = torch.randperm(num_prompts,
                                          generator=torch.Generator().manual_seed(
                                              seed * 100003 + epoch))
        out.append(int(perms[epoch][offset]))
    return out



def _pad_columns(x, width, value, left):
    fill = torch.full((x.shape[0], width - x.shape[1]), value, dtype=x.dtype, device=x.device)
    return torch.cat([fill, x] if left else [x, fill], 1)


def concat_rollouts(parts, pad_id):
    """Joins rollouts from several generation rounds: prompts are re-left-padded and responses
    right-padded to the widest, other tensors and lists are concatenated."""
    Tp = max(p["prompt_ids"].shape[1] for p in parts)
    Tr = max(p["response_ids"].shape[1] for p in parts)
    widths = {"prompt_ids": (Tp, pad_id, True), "prompt_mask": (Tp, 0, True),
              "response_ids": (Tr, pad_id, False), "mask": (Tr, 0, False),
              "sample_logp": (Tr, 0.0, False)}
    joined = {}
    for key, first in parts[0].items():
        if key in widths:
            joined[key] = torch.cat([_pad_columns(p[key], *widths[key]) for p in parts])
        elif torch.is_tensor(first):
            joined[key] = torch.cat([p[key] for p in parts])
        else:
            joined[key] = [x for p in parts for x in p[key]]
    return joined


def select_rows(rollout, rows):
    return {k: v[rows] if torch.is_tensor(v) else [v[i] for i in rows.tolist()] for k,
            v in rollout.items()}


# the random stream of evaluations: a prompt-stream position no training run reaches
EVAL_POSITION = 2 ** 62


def sample_and_score(model, tokenizer, eos_ids, prompt_ids, prompts, columns, scorer, cfg, device,
                     dtype, rows=None, all_done=None, batch_size=64):
    """EVAL_SAMPLES responses to each prompt, sampled and scored: the one implementation of
    evaluation, used by evaluate.py on saved policies and by ppo.py during training
    (PPOTrainer.evaluate). Row r of the len(prompts) * EVAL_SAMPLES rows answers prompt r //
    EVAL_SAMPLES with random numbers fixed by (SEED, r), so successive evaluations of a changing
    policy use the same numbers and differ only by the policy, and the result does not depend on how
    rows are split into batches or processes. rows: the rows this process takes (default all);
    all_done: as for sample. Returns the (n,) rewards, the (n, scorers) scores they sum, the (n,)
    response lengths in tokens (EOS included) and the examples."""
    S = cfg.EVAL_SAMPLES
    n_rows = len(prompts) * S
    rows = list(range(n_rows) if rows is None else rows)
    scores, parts, lengths, examples = [], [], [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        index = [r // S for r in chunk]
        input_ids, mask = left_pad([prompt_ids[i] for i in index], tokenizer.pad_token_id)
        uniforms = uniforms_for(cfg.SEED, EVAL_POSITION, n_rows, chunk)
        with autocast(device, dtype):
            response, _ = sample(model, input_ids.to(device), mask.to(device), cfg.MAX_NEW_TOKENS,
                                     cfg.TEMPERATURE, eos_ids, tokenizer.pad_token_id, uniforms,
                                     all_done)
        texts = tokenizer.batch_decode(response, skip_special_tokens=True)
        ended = torch.isin(response, eos_ids)  # (B, Tr)
        lengths.append(
            torch.where(ended.any(1), ended.int().argmax(1) + 1, response.shape[1]).cpu())
        chunk_prompts = [prompts[i] for i in index]
        total, chunk_parts = scorer(chunk_prompts, texts,
                                    {k: [v[i] for i in index] for k, v in columns.items()})
        scores.append(total)
        parts.append(chunk_parts)
        examples += [{"prompt": p, "response": r, "reward": s} for p, r, s in
                     zip(chunk_prompts, texts, total.tolist())]
    if not scores:  # no rows for this process
        return torch.zeros(
            0), torch.zeros(0, len(scorer.names)), torch.zeros(0, dtype=torch.long), []
    return torch.cat(scores), torch.cat(parts), torch.cat(lengths), examples
