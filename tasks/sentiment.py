"""The embedded default task: "make a tiny language model write positive text".

This file exists so that `python ppo.py` runs end to end on a laptop with no network and no GPU,
through exactly the same `from_pretrained` / `datasets` path a user's Qwen3 run takes. It holds:

  * a small template corpus of short reviews of mixed sentiment (English words, so samples read
    well),
  * `build()`: trains a byte-level BPE tokenizer on the corpus, wraps it as a `Qwen2Tokenizer` (the
    class Qwen3 checkpoints use), makes a tiny `Qwen3ForCausalLM`, warm-starts it with a short SFT
    on the corpus and saves both with `save_pretrained` -- cached in POLICY_DIR, built once (~30 s
    on 2 CPU cores);
  * `sentiment_reward`: the reward function, VADER's compound sentiment score of the response in
    [-1, 1] (Hutto & Gilbert 2014, a lexicon-and-rules scorer from PyPI, fully offline);
  * `build_reward_model()`: the same judgement as a Qwen3 sequence classifier sharing the policy's
    tokenizer, for trainers that need a reward *model* of that kind (TRL's PPOTrainer, in
    bench/speed.py --trl).

`python -m tasks.sentiment` rebuilds the model and rewrites data/prompts.jsonl and
data/eval_prompts.jsonl.
"""

import json
import os
import random
import sys
import time

import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
# where build() caches the warm-started policy
POLICY_DIR = os.path.join(_ROOT, ".cache", "tiny-qwen3-sft")
PROMPTS_FILE = os.path.join(_ROOT, "data", "prompts.jsonl")  # training prompts (shipped)
# build_reward_model(): a Qwen3 sentiment classifier
REWARD_DIR = os.path.join(_ROOT, ".cache", "tiny-qwen3-rm")
# held-out subjects, for evaluate.py
EVAL_PROMPTS_FILE = os.path.join(_ROOT, "data", "eval_prompts.jsonl")

# ---- the corpus: "<subject> <verb> <opinion>." with the opinion's sentiment drawn at random ------
SUBJECTS = ["the movie", "the food", "my day", "the weather", "this book", "the hotel", "our trip",
            "the service", "the music", "the game", "my new phone", "the class", "the party",
            "the coffee",
            "the city", "the show", "the park", "the dinner", "the concert", "the beach"]
# never used as training prompts; evaluate.py checks generalisation on them
EVAL_SUBJECTS = SUBJECTS[-4:]
VERBS = ["was", "is", "felt", "seemed"]
ADVERBS = ["", "", "really ", "very ", "quite ", "so "]
ADJECTIVES = {
    "pos": ["great", "wonderful", "amazing", "lovely", "excellent", "fun", "beautiful", "perfect",
            "nice",
            "delightful", "brilliant", "good"],
    "neg": ["terrible", "awful", "boring", "bad", "horrible", "sad", "disappointing", "ugly",
            "painful",
            "dull", "annoying", "poor"],
    "neu": ["long", "short", "quiet", "busy", "new", "old", "small", "big", "different", "late"],
}
CLAUSES = {
    "pos": ["and i loved it", "and everyone smiled", "and i would go again", "and it made me happy",
            "so we laughed a lot", "and i enjoyed every minute", "and my friends liked it too"],
    "neg": ["and i hated it", "and nobody smiled", "and i will never go back",
            "and it made me angry",
            "so we left early", "and i regret it", "and my friends were upset"],
    "neu": ["and then we went home", "and it was tuesday", "and the room had a table",
            "so we took the bus", "and i had a sandwich", "and it ended at nine"],
}


def make_sentence(rng, subject=None):
    """One corpus line; the adjective and the clause draw their sentiment independently."""
    subject = subject or rng.choice(SUBJECTS)
    adj = rng.choice(ADJECTIVES[rng.choice(list(ADJECTIVES))])
    sentence = f"{subject} {rng.choice(VERBS)} {rng.choice(ADVERBS)}{adj}"
    if rng.random() < 0.7:
        sentence += " " + rng.choice(CLAUSES[rng.choice(list(CLAUSES))])
    return sentence + "."


def make_corpus(n=6000, seed=0):
    rng = random.Random(seed)
    return [make_sentence(rng) for _ in range(n)]


def make_prompts(subjects):
    """Every subject alone, with each verb, and after 'i think' -- 6 prompts per subject."""
    prompts = []
    for s in subjects:
        prompts += [s] + [f"{s} {v}" for v in VERBS] + [f"i think {s} was"]
    return prompts


# ---- the reward function: REWARD_MODEL = "tasks.sentiment:sentiment_reward" ----------------------
_vader = None


def sentiment_reward(prompts, responses):
    """VADER compound score of each response (the prompt is ignored): -1 very negative ... +1 very
    positive."""
    global _vader
    if _vader is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        _vader = SentimentIntensityAnalyzer()
    return [_vader.polarity_scores(r)["compound"] for r in responses]


# ---- building the tiny policy --------------------------------------------------------------------
def build_tokenizer(corpus, vocab_size=400, pad_token=None):
    """Byte-level BPE trained on the corpus, wrapped as the Qwen2Tokenizer class Qwen3 checkpoints
    load as. Like Qwen3-Base, the same token <|endoftext|> is both EOS and pad (ppo.py never infers
    EOS from pad), unless pad_token names a separate one (TRL's PPOTrainer needs that: it masks
    every pad-valued token, EOS included)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size,
                                  special_tokens=["<|endoftext|>", *filter(None, [pad_token])],
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    return Qwen2Tokenizer(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]],
                          eos_token="<|endoftext|>", pad_token=pad_token or "<|endoftext|>",
                          unk_token=None)


def save_cached(model, tokenizer, out_dir):
    """save_pretrained into out_dir.tmp, then renamed into place: a killed build never leaves a
    half-written cache behind (the builders here and in tasks/arithmetic.py skip a folder that has a
    config.json)."""
    tmp = out_dir + ".tmp"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, out_dir)


def build(out_dir=POLICY_DIR, sft_steps=300, seed=0, log=print, pad_token=None):
    """Build and cache the warm-started tiny Qwen3 policy in out_dir (no-op when it is already
    there)."""
    if os.path.exists(os.path.join(out_dir, "config.json")):
        return out_dir
    from transformers import Qwen3Config, Qwen3ForCausalLM

    t0 = time.time()
    torch.manual_seed(seed)
    corpus = make_corpus(seed=seed)
    tok = build_tokenizer(corpus, pad_token=pad_token)
    # ~0.2M parameters: big enough to learn the templates, small enough to train PPO on 2 CPU cores
    # in minutes.
    config = Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=192,
                         num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         max_position_embeddings=256,
                         tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=None)
    model = Qwen3ForCausalLM(config)
    log(f"building the embedded default policy in {out_dir}: SFT of a "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M-parameter Qwen3 on {len(corpus)} "
        "sentences")
    # SFT warm start: next-token loss on "sentence<eos>", right-padded; padding is excluded from the
    # loss.
    ids = [tok(s)["input_ids"] + [tok.eos_token_id] for s in corpus]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / sft_steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for i in range(sft_steps):
        batch = [ids[j] for j in torch.randint(len(ids), (64,), generator=g).tolist()]
        T = max(map(len, batch))
        input_ids = torch.tensor([b + [tok.pad_token_id] * (T - len(b)) for b in batch])  # (B, T)
        mask = torch.tensor([[1] * len(b) + [0] * (T - len(b)) for b in batch])  # (B, T)
        labels = input_ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if i % 100 == 0 or i == sft_steps - 1:
            log(f"  sft step {i:4d}  loss {loss.item():.3f}")
    save_cached(model, tok, out_dir)
    log(f"  built in {time.time() - t0:.0f}s")
    return out_dir


def reward_model_examples(n, seed):
    """(prompt, response, ends_with_eos, target) for the reward model: a corpus sentence cut after
    its first 1-4 words, the rest (sometimes cut short, as MAX_NEW_TOKENS cuts responses) as the
    response, VADER's score as target. Half the whole responses carry the EOS token, as TRL presents
    a response that stopped (ppo.py's RewardModel reads decoded text, without it): the score must
    not depend on it."""
    rng = random.Random(seed)
    examples = []
    for sentence in make_corpus(n, seed):
        words = sentence.split()
        k = rng.randint(1, min(4, len(words) - 1))
        end = rng.randint(k + 1, len(words)) if rng.random() < 0.3 else len(words)
        prompt, response = " ".join(words[:k]), " " + " ".join(words[k:end])
        eos = end == len(words) and rng.random() < 0.5
        examples.append((prompt, response, eos, sentiment_reward([prompt], [response])[0]))
    return examples


def build_reward_model(policy_dir=POLICY_DIR, out_dir=REWARD_DIR, steps=400, seed=0, log=print):
    """A Qwen3 sequence classifier that predicts VADER's score of a response, sharing the policy's
    tokenizer (as TRL's PPOTrainer requires of its reward and value models): the SFT policy's
    backbone with a fresh scalar head, regressed on reward_model_examples. It reads the prompt and
    response tokens back to back, the way ppo.py's RewardModel (a text pair without special tokens)
    and TRL (the token ids) both present them. Cached."""
    if os.path.exists(os.path.join(out_dir, "config.json")):
        return out_dir
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    t0 = time.time()
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(policy_dir)
    model = AutoModelForSequenceClassification.from_pretrained(policy_dir, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id  # the classifier reads the last non-pad token
    train, held_out = reward_model_examples(6000, seed + 1), reward_model_examples(500, seed + 2)

    def batch_of(examples):
        ids = [tok(p)["input_ids"] + tok(r)["input_ids"] + [tok.eos_token_id] * eos for p, r, eos,
               _ in examples]
        T = max(map(len, ids))
        # (B, T), right-padded
        input_ids = torch.tensor([x + [tok.pad_token_id] * (T - len(x)) for x in ids])
        mask = torch.tensor([[1] * len(x) + [0] * (T - len(x)) for x in ids])
        return input_ids, mask, torch.tensor([t for *_, t in examples])

    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        input_ids, mask, target = batch_of([train[j]
                                            for j in torch.randint(len(train), (64,), generator=g)])
        loss = torch.nn.functional.mse_loss(
            model(input_ids=input_ids, attention_mask=mask).logits[:, 0], target)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        input_ids, mask, target = batch_of(held_out)
        pred = model(input_ids=input_ids, attention_mask=mask).logits[:, 0]
    corr = torch.corrcoef(torch.stack([pred, target]))[0, 1].item()
    log(f"built the reward model {out_dir} in {time.time() - t0:.0f}s: held-out MSE "
        f"{torch.nn.functional.mse_loss(pred, target).item():.3f}, correlation with VADER "
        f"{corr:.3f}")
    save_cached(model, tok, out_dir)
    return out_dir


def write_prompt_files():
    train = [s for s in SUBJECTS if s not in EVAL_SUBJECTS]
    for path, subjects in ((PROMPTS_FILE, train), (EVAL_PROMPTS_FILE, EVAL_SUBJECTS)):
        with open(path, "w") as f:
            for p in make_prompts(subjects):
                f.write(json.dumps({"prompt": p}) + "\n")


if __name__ == "__main__":
    write_prompt_files()
    if "--force" in sys.argv:
        import shutil
        shutil.rmtree(POLICY_DIR, ignore_errors=True)
    build()
