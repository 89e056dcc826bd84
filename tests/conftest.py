"""Tiny models and data for the tests, written with save_pretrained so ppo.py loads them the way it
loads a user's.

The policy is a Qwen3 with a byte-level BPE tokenizer; the reward model is a DeBERTa-v2 with its own
SentencePiece-style (Unigram) tokenizer, so the two vocabularies differ as they do for Qwen3 +
OpenAssistant.
"""
import json
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tasks import sentiment  # noqa: E402


def make_qwen3_policy(path, seed=0, vocab_size=300):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(seed)
    tok = sentiment.build_tokenizer(sentiment.make_corpus(n=500, seed=seed), vocab_size=vocab_size)
    config = Qwen3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                         max_position_embeddings=128,
                         tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    Qwen3ForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_deberta_reward_model(path, seed=0):
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Tokenizer
    torch.manual_seed(seed)
    words = sorted({w.strip(".") for s in sentiment.make_corpus(n=500) for w in s.split()})
    vocab = [(t, 0.0) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    vocab += [("\u2581" + w, -1.0) for w in words] + [(c, -5.0)
                                                      for c in "abcdefghijklmnopqrstuvwxyz.,!?'"]
    vocab += [("\u2581", -3.0)]
    tok = DebertaV2Tokenizer(vocab=vocab)
    config = DebertaV2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=128,
                             pooler_hidden_size=32, num_labels=1, pad_token_id=0)
    DebertaV2ForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_prompts(path, prompts, key="prompt"):
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps({key: p}) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Paths of a tiny Qwen3 policy, a DeBERTa-v2 reward model and a prompts file."""
    d = tmp_path_factory.mktemp("tiny")
    prompts = sentiment.make_prompts(sentiment.SUBJECTS[:8])
    return {
        "policy": make_qwen3_policy(str(d / "qwen3")),
        "reward": make_deberta_reward_model(str(d / "deberta")),
        "prompts": write_prompts(str(d / "prompts.jsonl"), prompts),
        "dir": d,
    }


def tiny_args(tiny, out_dir, **overrides):
    """Command-line overrides for a fast run on the tiny models. The charts are drawn at the end
    only (PLOT_EVERY=100): drawing them is most of a tiny run's time (a second or two each), and
    the tests that need them mid-run ask for them."""
    settings = dict(ACTOR_MODEL=tiny["policy"], CRITIC_MODEL=tiny["policy"],
                    REWARD_MODEL=tiny["reward"],
                    DATASET=tiny["prompts"], OUTPUT_DIR=str(out_dir), BATCH_SIZE=8,
                    MINI_BATCH_SIZE=4,
                    MICRO_BATCH_SIZE=4, PPO_EPOCHS=2, MAX_NEW_TOKENS=8, MAX_STEPS=3, SAMPLE_EVERY=1,
                    PLOT_EVERY=100)
    settings.update(overrides)
    return [f"--{k}={v}" for k, v in settings.items()]


def load_config(argv=(), log=None):
    """ppo.py's settings for these arguments, as ppo.main reads them."""
    import ppo
    from machinery import settings
    return settings.load_config(list(argv), ppo.TABLES, log)


def check_settings(cfg):
    """The checks among settings, for ALGORITHM's traits, as PPOTrainer makes them."""
    import ppo
    from machinery import settings
    settings.check_settings(cfg, ppo.ALGORITHMS[cfg.ALGORITHM])
