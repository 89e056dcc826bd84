"""The embedded verifiable-reward task: "add two numbers", scored by exact match against an answer
column.

    # GRPO; configs/arithmetic_ppo.py for PPO (each a few minutes)
    python ppo.py configs/arithmetic_grpo.py
    python evaluate.py .cache/tiny-qwen3-arith runs/arithmetic-grpo/policy \
        --DATASET=data/arithmetic_eval.jsonl \
        --REWARD_MODEL=tasks.rewards:exact_match --MAX_NEW_TOKENS=4

This file exists so that the most common task of the day, a reward checked against a reference
answer, runs offline on two CPU cores through the same path as a user's math dataset. It holds:

  * `make_problems()`: "a+b=" prompts with a, b in [0, 99] and the sum in an `answer` column; the
    1,000 training and 200 held-out problems (disjoint pairs) are shipped as
    data/arithmetic_train.jsonl and data/arithmetic_eval.jsonl;
  * `build()`: a character-level tokenizer (one token per character, so "46" is two tokens), a tiny
    Qwen3 and a deliberately short SFT warm start on other problems, so that the policy answers some
    problems right and has something left to learn; cached in POLICY_DIR (~40 s on 2 CPU cores).

The reward is `rewards.exact_match`, which reads the `answer` column: ppo.py passes every dataset
column to a reward function that names it (or takes **kwargs).
"""

import json
import os
import random
import sys
import time

import torch

from tasks import sentiment

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
# build() caches the warm-started policy here
POLICY_DIR = os.path.join(_ROOT, ".cache", "tiny-qwen3-arith")
TRAIN_FILE = os.path.join(_ROOT, "data", "arithmetic_train.jsonl")  # training problems (shipped)
EVAL_FILE = os.path.join(_ROOT, "data", "arithmetic_eval.jsonl")  # held-out problems (shipped)
MAX_OPERAND = 99


def make_problems(pairs):
    return [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in pairs]


def split_pairs(seed=0, n_train=1000, n_eval=200, n_sft=2000):
    """Three disjoint sets of (a, b): RL training, held-out evaluation, and the SFT warm start."""
    pairs = [(a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]
    random.Random(seed).shuffle(pairs)
    return pairs[
        :n_train], pairs[n_train:n_train + n_eval], pairs[n_train + n_eval:n_train + n_eval + n_sft]


def build_tokenizer():
    """One token per character: Qwen3's byte-level BPE class with the 256 byte symbols and no
    merges."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|endoftext|>": 0, **{ch: i + 1 for i, ch in enumerate(alphabet)}}
    return Qwen2Tokenizer(vocab=vocab, merges=[], eos_token="<|endoftext|>",
                          pad_token="<|endoftext|>", unk_token=None)


def build(out_dir=POLICY_DIR, sft_steps=1200, seed=0, log=print):
    """Build and cache the warm-started policy in out_dir (no-op when it is already there)."""
    if os.path.exists(os.path.join(out_dir, "config.json")):
        return out_dir
    from transformers import Qwen3Config, Qwen3ForCausalLM

    t0 = time.time()
    torch.manual_seed(seed)
    tok = build_tokenizer()
    config = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=192,
                         num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         max_position_embeddings=64,
                         tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=None)
    model = Qwen3ForCausalLM(config)
    sft = make_problems(split_pairs(seed)[2])
    log(f"building the arithmetic policy in {out_dir}: {sft_steps} SFT steps of a "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M-parameter Qwen3 on {len(sft)} "
        "other problems")
    # Loss on the answer and EOS only (the prompt is given), right-padded; padding is excluded from
    # the loss.
    rows = [(tok(p["prompt"])["input_ids"], tok(p["answer"])["input_ids"] + [tok.eos_token_id])
            for p in sft]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for i in range(sft_steps):
        batch = [rows[j] for j in torch.randint(len(rows), (64,), generator=g).tolist()]
        T = max(len(p) + len(a) for p, a in batch)
        # (B, T)
        input_ids = torch.tensor([p + a + [tok.pad_token_id] * (T - len(p) - len(a)) for p,
                                  a in batch])
        mask = torch.tensor([[1] * (len(p) + len(a)) + [0] * (T - len(p) - len(a)) for p,
                             a in batch])
        labels = torch.tensor([[-100] * len(p) + a + [-100] * (T - len(p) - len(a)) for p,
                               a in batch])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i % 50 == 0 or i == sft_steps - 1:
            log(f"  sft step {i:4d}  loss {loss.item():.3f}")
    sentiment.save_cached(model, tok, out_dir)
    log(f"  built in {time.time() - t0:.0f}s")
    return out_dir


def write_data_files(seed=0):
    train, held_out, _ = split_pairs(seed)
    for path, pairs in ((TRAIN_FILE, train), (EVAL_FILE, held_out)):
        with open(path, "w") as f:
            f.writelines(json.dumps(p) + "\n" for p in make_problems(pairs))


if __name__ == "__main__":
    write_data_files()
    if "--force" in sys.argv:
        import shutil
        shutil.rmtree(POLICY_DIR, ignore_errors=True)
    build()
