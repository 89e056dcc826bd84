"""Where a step's time and memory go: seconds per phase, generated tokens per second, peak memory.

    # the embedded default task, 3 warm-up + 10 timed steps
    python bench/speed.py
    # after --: ppo.py settings
    python bench/speed.py --steps=20 -- --ALGORITHM=grpo --GROUP_SIZE=4 --BATCH_SIZE=8
    # also: step time against response length and batch size
    python bench/speed.py --sweep
    # also: side by side with TRL's PPOTrainer (trl==1.0.0 in VENV)
    python bench/speed.py --trl=VENV/bin/python
    python bench/speed.py --limits               # this machine's matmul peak and memory bandwidth
    # real shapes, random weights: phases vs limits
    python bench/speed.py --shapes=medium,0.6B --steps=3 --warmup=1
    # memory estimates (--sharded under torchrun: measured, FSDP2)
    python bench/speed.py --memory

Prints a table and writes bench.json (in --out). Timings come from the trainer's own per-phase
clocks (which synchronise the GPU at phase boundaries); memory is the process's peak RSS on CPU and
torch.cuda.max_memory_allocated per GPU. Warm-up steps are excluded: the first steps pay for lazy
initialisation.
"""
import argparse
import contextlib
import functools
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
from types import SimpleNamespace

import torch

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
sys.path.insert(0, HERE)  # run as python bench/speed.py
from machinery import script  # noqa: E402
import plotting  # noqa: E402
import ppo  # noqa: E402
from machinery import run_files  # noqa: E402
from machinery.script import Refusal  # noqa: E402
from machinery.settings import load_config, merge_settings  # noqa: E402
from machinery.models import (add_lora, dtype_copy, enable_gradient_checkpointing,  # noqa: E402
                              load_causal_lm, load_tokenizer, resolve_dtype)

PHASES = ["time_generate", "time_reward", "time_forward", "time_update", "step_time"]

# --trl: the settings of bench/trl_runner.py's main_ppo (TRL's PPOTrainer) in our terms. TRL's PPO
# needs a reward and value model sharing the policy's tokenizer, and a pad token other than EOS (it
# masks every pad-valued token, so with pad == EOS it would never train the EOS token): both
# trainers get the same policy built with a separate <|pad|> and a Qwen3 sentiment classifier as
# reward model and critic initialisation. TRL uses one optimizer for policy and value and never
# clips gradients; ours gets the same learning rate for both and no clipping.
TRL_PPO_ARGS = ["--BATCH_SIZE=32", "--MINI_BATCH_SIZE=8", "--MICRO_BATCH_SIZE=8", "--PPO_EPOCHS=4",
                "--MAX_NEW_TOKENS=16", "--TEMPERATURE=1.0", "--LEARNING_RATE=3e-4",
                "--CRITIC_LEARNING_RATE=None",
                "--LR_SCHEDULE=linear", "--KL_COEF=0.05", "--KL_ESTIMATOR=k1", "--CLIP_RANGE=0.2",
                "--VALUE_CLIP_RANGE=0.2", "--GAMMA=1.0", "--LAM=0.95", "--MAX_GRAD_NORM=None",
                "--CRITIC_MAX_GRAD_NORM=None",
                "--PLOT_EVERY=100000", "--SAVE_EVERY=100000"]
PAD_POLICY_DIR = os.path.join(HERE, ".cache", "tiny-qwen3-sft-pad")
PAD_REWARD_DIR = os.path.join(HERE, ".cache", "tiny-qwen3-rm-pad")


def measure(settings, steps, warmup):
    """Runs warmup + steps PPO steps with these ppo.py settings; returns the timed steps'
    summary."""
    with tempfile.TemporaryDirectory() as out:
        own = [f"--OUTPUT_DIR={out}", f"--MAX_STEPS={warmup + steps}"]
        cfg = load_config(merge_settings(settings, own), ppo.TABLES)
        trainer = ppo.PPOTrainer(cfg, log=lambda *a: None)
        for d in {d for d in trainer.devices.values() if d.type == "cuda"}:
            torch.cuda.reset_peak_memory_stats(d)
        rows = [trainer.step()[0] for _ in range(warmup + steps)][warmup:]
    summary = {k: {"mean": statistics.mean(r[k] for r in rows),
                   "stdev": statistics.pstdev(r[k] for r in rows)}
               for k in PHASES}
    tokens = sum(r["response_length"] * cfg.BATCH_SIZE * cfg.GROUP_SIZE for r in rows)
    summary["tokens_per_sec"] = tokens / sum(r["step_time"] for r in rows)
    summary["response_length"] = statistics.mean(r["response_length"] for r in rows)
    # Linux: KiB
    summary["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary["peak_cuda_mib"] = {str(d): torch.cuda.max_memory_allocated(d) / 2 ** 20
                                for d in {d for d in trainer.devices.values() if d.type == "cuda"}}
    summary["reward_first_last"] = [rows[0]["reward"], rows[-1]["reward"]]
    return summary


def phase_table(summary):
    lines = ["| phase | seconds per step | share |", "|---|---|---|"]
    total = summary["step_time"]["mean"]
    for k in PHASES:
        m, s = summary[k]["mean"], summary[k]["stdev"]
        lines.append(f"| {k.removeprefix('time_')} | {m:.4f} +- {s:.4f} | {100 * m / total:.0f}% |")
    lines.append(
        f"\ngenerated tokens/s {summary['tokens_per_sec']:.0f}; peak RSS "
        f"{summary['peak_rss_mib']:.0f} MiB"
        + "".join(f"; {d} peak {m:.0f} MiB" for d, m in summary["peak_cuda_mib"].items()))
    return "\n".join(lines)


# Qwen3-0.6B ... 8B and OpenAssistant/reward-model-deberta-v3-large-v2, from their config.json on
# the hub (built here on the meta device, so the parameter counts are exact without downloading
# anything). 8B alone unties its input and output embeddings.
QWEN3_06B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                 tie_word_embeddings=True)
QWEN3 = {"0.6B": QWEN3_06B,
         "1.7B": dict(QWEN3_06B, hidden_size=2048, intermediate_size=6144),
         "4B": dict(QWEN3_06B, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                    num_attention_heads=32),
         "8B": dict(QWEN3_06B, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                    num_attention_heads=32, tie_word_embeddings=False)}
DEBERTA_V3_LARGE = dict(vocab_size=128100, hidden_size=1024, intermediate_size=4096,
                        num_hidden_layers=24, num_attention_heads=16, max_position_embeddings=512,
                        relative_attention=True, position_buckets=256, pos_att_type=["p2c", "c2p"],
                        norm_rel_ebd="layer_norm",
                        share_att_key=True, pooler_hidden_size=1024, num_labels=1)


def parameter_counts(lora_rank, size="0.6B"):
    """(policy, critic, reward model) parameter counts, and the LoRA parameters peft's "all-linear"
    adds to the policy's and the critic's backbone (r x (in + out) per linear layer, the output head
    excluded)."""
    *models, lora = model_parts(lora_rank, size)
    return tuple(n for n, _, _ in models) + (lora,)


@functools.lru_cache
def model_parts(lora_rank, size="0.6B"):
    """[(parameters, of them outside the blocks, in one block) for the policy, the critic and the
    reward model], plus the LoRA parameter count: the blocks are FSDP2's units (distributed.blocks),
    the rest is the root's."""
    from machinery import distributed
    from transformers import (DebertaV2Config, DebertaV2ForSequenceClassification, Qwen3Config,
                              Qwen3ForCausalLM, Qwen3ForSequenceClassification)
    with torch.device("meta"):
        policy = Qwen3ForCausalLM(Qwen3Config(**QWEN3[size]))
        critic = Qwen3ForSequenceClassification(Qwen3Config(**QWEN3[size], num_labels=1))
        reward = DebertaV2ForSequenceClassification(DebertaV2Config(**DEBERTA_V3_LARGE))
    lora = sum(lora_rank * (m.in_features + m.out_features) for m in policy.model.modules()
               if isinstance(m, torch.nn.Linear))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731 (tied: counted once)

    def parts(model):
        blocks = distributed.blocks(model)
        return count(model), count(model) - sum(map(count, blocks)), count(blocks[0])
    return parts(policy), parts(critic), parts(reward), lora


def memory_estimate(lora_rank=0, checkpointing=False, micro_batch=4, prompt_len=512,
                    response_len=256, size="0.6B", gpus=1, sharded=False):
    """GiB per part and GPU for PPO with Qwen3-`size` as policy, reference and critic and
    DeBERTa-v3-large as reward model, DTYPE=bfloat16 (autocast over float32 master weights). Trained
    weights: 16 bytes per parameter (float32 weight, gradient and two AdamW moments); the reference
    4 (float32, computed exactly as the policy); the reward model 2 (bfloat16); with LoRA the base
    is frozen and the adapters train, and there is no reference copy. Activations of one micro-batch
    in the update (the rollout's forwards keep no graph): ~68 bytes x tokens x hidden per layer and
    model, twice the 34 of GPT blocks in Korthikanti et al. 2022 (sec. 4) because of Qwen3's
    three-matrix SwiGLU MLP and the float32 copies its RMSNorms make under autocast (the factor is
    fitted to the measured peak on an H100, measure_memory); with checkpointing the float32 layer
    inputs (4 bytes) plus one layer's 68. Plus the policy's logits over the response, float32 copies
    for the log-softmax and entropy and their gradient, ~20 bytes x tokens x vocabulary. Without
    sharding policy and critic train at the same time (two threads), so both activations count.
    sharded (FSDP2 over `gpus` GPUs, one micro-batch per GPU): every weight, gradient and moment is
    divided by gpus, and a trained model in its update adds what FSDP2 holds whole for a moment (an
    estimate from its design, not yet measured): bf16 copies of the root's weights and of two blocks
    (the running one and the prefetched one), and (without LoRA, whose base has none) the unsharded
    gradients of the root and of one block in bf16 plus the float32 copy reduced (6 bytes). The
    critic trains after the policy, so only the larger of the two updates counts."""
    (n_policy, root_p, block_p), (
        n_critic, root_c, block_c), (n_reward, _, _), n_lora = model_parts(lora_rank, size)
    gib, share = 2 ** -30, gpus if sharded else 1
    trained = lambda n: ((2 * n + 16 * n_lora) if lora_rank else 16 * n) / share  # noqa: E731
    whole = lambda root, block: (  # noqa: E731
        2 * (root + 2 * block) + (0 if lora_rank else 6 * (root + block)) if sharded else 0)
    tokens, cfg = micro_batch * (prompt_len + response_len), QWEN3[size]
    per_layer = (4 if checkpointing else 68) * tokens * cfg["hidden_size"]
    layers = per_layer * cfg["num_hidden_layers"] + (68 * tokens * cfg["hidden_size"]
                                                     if checkpointing else 0)
    logits = 20 * micro_batch * (response_len + 1) * cfg["vocab_size"]
    return {"policy": trained(n_policy) * gib,
            "reference": (0 if lora_rank else 4 * n_policy / share) * gib,
            "critic": trained(n_critic) * gib, "reward model": 2 * n_reward / share * gib,
            "activations (policy update)": (layers + logits + whole(root_p, block_p)) * gib,
            "activations (critic update)": (layers + whole(root_c, block_c)) * gib}


def per_gpu_peak(e, layout):
    """The largest GPU's GiB from memory_estimate's parts: "one" (everything on one GPU, the updates
    in two threads), "split" (one process, policy and reference on cuda:0, critic and reward model
    on cuda:1), "fsdp" (sharded: the critic's update after the policy's)."""
    act_p, act_c = e["activations (policy update)"], e["activations (critic update)"]
    if layout == "split":
        return max(e["policy"] + e["reference"] + act_p, e["critic"] + e["reward model"] + act_c)
    weights = e["policy"] + e["reference"] + e["critic"] + e["reward model"]
    return weights + (act_p + act_c if layout == "one" else max(act_p, act_c))


SETUPS = (("full", {}), ("full, checkpointing", {"checkpointing": True}),
          ("LoRA r=16", {"lora_rank": 16}),
          ("LoRA r=16, checkpointing", {"lora_rank": 16, "checkpointing": True}))


def memory_plan():
    """Per-GPU GiB for Qwen3-0.6B ... 8B (policy, reference, critic) with DeBERTa-v3-large (reward
    model), on one GPU, two split by model, and 2 or 8 sharded with FSDP2, one micro-batch of 4 x
    (512 + 256) tokens per GPU; then which fit 2 x 24 GB and 8 x 80 GB GPUs (22 and 76 GiB usable,
    leaving room for CUDA's context and the allocator's fragments)."""
    layouts = (("1 GPU", 1, "one"), ("2 GPUs, split", 2, "split"), ("2 GPUs, FSDP", 2, "fsdp"),
               ("8 GPUs, FSDP", 8, "fsdp"))
    lines = [
        "| Qwen3 + DeBERTa-v3-large, GiB per GPU | " + " | ".join(
            name for name, _, _ in layouts) + " |",
        "|---" * (len(layouts) + 1) + "|"]
    fits = {"2 x 24 GB": [], "8 x 80 GB": []}
    for size in QWEN3:
        for setup, kw in SETUPS:
            peaks = [
                per_gpu_peak(memory_estimate(size=size, gpus=n, sharded=layout == "fsdp", **kw),
                             layout)
                for _, n, layout in layouts]
            lines.append(f"| {size}, {setup} | " + " | ".join(f"{p:.1f}" for p in peaks) + " |")
            best24 = min(p for p, (_, n, _) in zip(peaks, layouts) if n <= 2)
            if best24 <= 22:
                fits["2 x 24 GB"].append(f"{size} {setup} ({best24:.1f})")
            if peaks[-1] <= 76:
                fits["8 x 80 GB"].append(f"{size} {setup} ({peaks[-1]:.1f})")
    lines += [""] + [f"fits {gpus}: {', '.join(names) or 'none'}" for gpus, names in fits.items()]
    detail = memory_estimate(size="8B", gpus=8, sharded=True)
    lines += ["", "Qwen3-8B full fine-tuning on 8 GPUs with FSDP2, GiB per GPU: "
              + ", ".join(f"{k} {v:.1f}" for k, v in detail.items())]
    return "\n".join(lines)


def measure_memory(lora_rank=0, checkpointing=False, micro_batch=4, prompt_len=512,
                   response_len=256, device="cuda"):
    """Peak GPU memory (GiB) of two PPO updates of Qwen3-0.6B-shaped policy and critic (random
    weights, the shapes are what count) beside a float32 reference and a DeBERTa-v3-large-shaped
    reward model, one micro-batch of random tokens, with the trainer's own pieces: bf16 autocast
    over float32 master weights, fused AdamW, LoRA through add_lora, the policy's and the critic's
    backward in two threads. Needs a GPU; checks memory_estimate."""
    from concurrent.futures import ThreadPoolExecutor

    from transformers import (DebertaV2Config, DebertaV2ForSequenceClassification, Qwen3Config,
                              Qwen3ForCausalLM, Qwen3ForSequenceClassification)
    dev, bf16 = torch.device(device), torch.bfloat16
    on_gpu = dev.type == "cuda"
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    lora = SimpleNamespace(LORA_RANK=lora_rank, LORA_ALPHA=32, LORA_TARGET_MODULES="all-linear")
    # LoRA: a frozen bf16 base under float32 adapters
    trained_dtype = bf16 if lora_rank else torch.float32
    with dev:  # initialised on the GPU: seconds instead of minutes
        policy = Qwen3ForCausalLM(Qwen3Config(**QWEN3_06B)).to(trained_dtype)
        critic = Qwen3ForSequenceClassification(
            Qwen3Config(**QWEN3_06B, num_labels=1)).to(trained_dtype)
        # float32, as the trainer
        ref = None if lora_rank else Qwen3ForCausalLM(Qwen3Config(**QWEN3_06B)).eval()
        reward = DebertaV2ForSequenceClassification(
            DebertaV2Config(**DEBERTA_V3_LARGE)).to(bf16).eval()
    if lora_rank:
        policy, critic = add_lora(policy, lora, "CAUSAL_LM"), add_lora(critic, lora, "SEQ_CLS")
    for model in (policy, critic):
        if checkpointing:
            enable_gradient_checkpointing(model)
    inner = critic.get_base_model() if lora_rank else critic
    optimizers = [ppo.make_optimizer(policy, 1e-6), ppo.make_optimizer(critic, 1e-6)]
    vocab = min(QWEN3_06B["vocab_size"], DEBERTA_V3_LARGE["vocab_size"])
    ids = torch.randint(0, vocab, (micro_batch, prompt_len + response_len), device=dev)
    attn = torch.ones_like(ids)

    def critic_update():
        with ppo.autocast(dev, bf16):
            hidden = inner.base_model(
                input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
            values = inner.score(hidden)
        values.float().square().mean().backward()

    with ThreadPoolExecutor(1) as thread:
        for _ in range(2):  # the second update runs with AdamW's moments allocated
            with torch.no_grad(), ppo.autocast(dev, bf16):
                if ref is not None:
                    ppo.response_logprobs(ref, ids, attn, prompt_len, 1.0, bf16)
                reward(input_ids=ids[:, :512], attention_mask=attn[:, :512])
            job = thread.submit(critic_update)
            logp, entropy = ppo.response_logprobs(policy, ids, attn, prompt_len, 1.0, bf16)
            (-(logp.mean() + 0.01 * entropy.mean())).backward()
            job.result()
            for opt in optimizers:
                opt.step()
                opt.zero_grad(set_to_none=True)
    if not on_gpu:  # a CPU run only checks that the pieces fit together
        return float("nan")
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(dev) / 2 ** 30


@contextlib.contextmanager
def parameters_on_meta():
    """Modules built inside get their parameters on the meta device (no storage, no initialisation
    cost) and keep their buffers (rotary frequencies, position ids) real, as accelerate's
    init_empty_weights(include_buffers=False) does: a model of any size is built in seconds,
    sharded, then given storage shard by shard."""
    register = torch.nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param)
        if param is not None:
            module._parameters[
                name] = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


# ---- the machine's limits: speed measured against what the hardware could do ---------------------
def forward_flops(cfg, n_seqs, seq_len, logits_kept, context=None):
    """Matmul FLOPs of one forward of a Qwen3-shaped causal LM (cfg: a QWEN3-style dict) over n_seqs
    sequences of seq_len tokens with logits at logits_kept positions each: 2 x tokens x the weights
    of every linear layer of every block (q, k, v, o; gate, up, down), 4 x heads x head_dim x
    seq_len x context per sequence and block for attention's two matmuls (context: the keys each
    query meets, seq_len by default; a decoding step with a KV cache has seq_len 1 and the cache's
    length as context; counted whole, the causal mask's masked half included, as torch's
    FlopCounterMode counts them), and 2 x hidden x vocab per kept logit. Norms, rotary embeddings
    and softmax are left out. A backward costs twice a forward (Kaplan et al. 2020), so a training
    micro-batch is 3x this."""
    h, heads, kv, hd = cfg[
        "hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    linear = h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * cfg["intermediate_size"]
    context = seq_len if context is None else context
    per_block = 2 * n_seqs * seq_len * linear + 4 * n_seqs * heads * seq_len * context * hd
    return cfg["num_hidden_layers"] * per_block + 2 * n_seqs * logits_kept * h * cfg["vocab_size"]


def repeats_per_second(fn, device, seconds):
    """How many times a second fn() runs on device, after one warm-up call (waiting for a GPU after
    each)."""
    import time
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    fn()
    sync()
    start, reps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        fn()
        reps += 1
        sync()
    return reps / (time.perf_counter() - start)


def matmul_peak(device="cpu", dtype=torch.float32, n=2048, seconds=1.0):
    """FLOP/s of square n x n matrix products on this machine, as fast as torch.mm runs them here:
    the yardstick for a phase's matmul utilisation."""
    a, b = torch.randn(
        n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n ** 3 * repeats_per_second(lambda: torch.mm(a, b), device, seconds)


def memory_bandwidth(device="cpu", mib=256, seconds=1.0):
    """Bytes/s that copying a mib-MiB tensor moves (each copy reads it and writes it: 2 x its size):
    the yardstick for decoding, which reads every weight and the KV cache once per token."""
    src = torch.ones(mib * 2 ** 18, device=device)  # float32: 4 bytes each
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 * repeats_per_second(lambda: dst.copy_(src), device, seconds)


# ---- Real shapes (issue 15): random-weight models of real configurations, per-phase utilisation --
# "medium": Qwen3's proportions at hidden 256 (4 layers, 8k vocabulary), small enough for a 2-core
# CPU to run TRL's PPO beside ours; 0.6B and up: the seed's job, Qwen3-<size> as policy, reference
# and critic with DeBERTa-v3-large as reward model.
MEDIUM = dict(QWEN3_06B, vocab_size=8192, hidden_size=256, intermediate_size=768,
              num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=64)
SHAPES = {"medium": MEDIUM, **QWEN3}
SHAPES_DIR = os.path.join(HERE, ".cache", "shapes")
SPECIAL = ["<pad>", "<eos>", "<unk>"]  # ids 0, 1, 2


def word_tokenizer(n_words):
    """A tokenizer of n_words ids: the special tokens, then the words w0, w1, ... one token each
    (whitespace-split word level). Random-weight models sample every id of their vocabulary; with
    this tokenizer every sampled id decodes to a word and re-encodes to one token, so a reward model
    reads as many tokens as were sampled."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(SPECIAL + [f"w{i}" for i in range(n_words - len(SPECIAL))])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def build_shape(shape, prompt_len, qwen3_reward=None, n_prompts=256, seed=0, root=None):
    """Random-weight models of `shape` saved with save_pretrained (float32, loaded back through
    from_pretrained as any run's are) with their tokenizers, and n_prompts prompts of prompt_len
    words. policy/ is a Qwen3ForCausalLM; reward/ is a Qwen3 sequence classifier of the same shape
    when qwen3_reward (the default for "medium"; TRL's PPO wants one tokenizer for policy, reward
    model and critic), else DeBERTa-v3-large. Built once per (shape, prompt_len, reward, seed) into
    root/<shape>-p<prompt_len>-<reward>-s<seed> (written to a temporary folder, then renamed).
    Returns the folder."""
    import shutil

    from transformers import (DebertaV2Config, DebertaV2ForSequenceClassification, Qwen3Config,
                              Qwen3ForCausalLM, Qwen3ForSequenceClassification)
    qwen3_reward = shape == "medium" if qwen3_reward is None else qwen3_reward
    root = root or SHAPES_DIR
    folder = os.path.join(root,
                          f"{shape}-p{prompt_len}-{'qwen3' if qwen3_reward else 'deberta'}-s{seed}")
    if os.path.exists(os.path.join(folder, "prompts.jsonl")):
        return folder
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(seed)
    cfg = dict(SHAPES[shape], eos_token_id=1, pad_token_id=0)
    tok = word_tokenizer(cfg["vocab_size"])
    policy = Qwen3ForCausalLM(Qwen3Config(**cfg))
    policy.save_pretrained(os.path.join(tmp, "policy"))
    tok.save_pretrained(os.path.join(tmp, "policy"))
    del policy
    if qwen3_reward:
        reward, reward_tok = Qwen3ForSequenceClassification(Qwen3Config(**cfg, num_labels=1)), tok
    else:  # words past DeBERTa's vocabulary read as <unk>: still one token each
        reward_tok = word_tokenizer(DEBERTA_V3_LARGE["vocab_size"])
        reward = DebertaV2ForSequenceClassification(
            DebertaV2Config(**DEBERTA_V3_LARGE, pad_token_id=0))
    reward.save_pretrained(os.path.join(tmp, "reward"))
    reward_tok.save_pretrained(os.path.join(tmp, "reward"))
    words = torch.randint(0, min(cfg["vocab_size"], DEBERTA_V3_LARGE["vocab_size"]) - len(SPECIAL),
                          (n_prompts, prompt_len))
    with open(os.path.join(tmp, "prompts.jsonl"), "w") as f:
        for row in words.tolist():
            f.write(json.dumps({"prompt": " ".join(f"w{i}" for i in row)}) + "\n")
    os.makedirs(root, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.rename(tmp, folder)
    return folder


def qwen3_reward_in(folder):
    """Whether build_shape's folder holds a Qwen3 classifier as reward model (else
    DeBERTa-v3-large)."""
    with open(os.path.join(folder, "reward", "config.json")) as f:
        return json.load(f)["model_type"] == "qwen3"


def shape_settings(folder, batch, prompt_len, response_len, epochs, micro_batch=8):
    """ppo.py settings for a run on build_shape's folder: PPO, one optimizer step per minibatch of 8
    sequences (or the whole batch when smaller), a learning rate small enough for random weights.
    The critic starts from a Qwen3 reward model (as in TRL's PPO), else from the policy (the seed's
    setup: DeBERTa cannot be a Qwen3 critic)."""
    mini = min(batch, 8)
    critic = "reward" if qwen3_reward_in(folder) else "policy"
    return [f"--ACTOR_MODEL={folder}/policy", f"--CRITIC_MODEL={folder}/{critic}",
            f"--REWARD_MODEL={folder}/reward",
            f"--DATASET={folder}/prompts.jsonl", f"--MAX_PROMPT_LENGTH={prompt_len}",
            "--CHAT_TEMPLATE=False",
            f"--BATCH_SIZE={batch}", f"--MAX_NEW_TOKENS={response_len}", f"--PPO_EPOCHS={epochs}",
            f"--MINI_BATCH_SIZE={mini}", f"--MICRO_BATCH_SIZE={min(mini, micro_batch)}",
            "--LEARNING_RATE=1e-6",
            "--PLOT_EVERY=100000", "--SAVE_EVERY=100000"]


def reward_flops(shape, n_seqs, seq_len, qwen3_reward):
    """Matmul FLOPs of the reward model's forward: a Qwen3 classifier by forward_flops;
    DeBERTa-v3-large (whose disentangled attention adds position-key and position-query products)
    counted by torch's FlopCounterMode on a model on the meta device, at most 512 tokens (what it
    reads; longer pairs lose the start of their prompt)."""
    if qwen3_reward:
        return forward_flops(SHAPES[shape], n_seqs, seq_len, 0)
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification
    with torch.device("meta"):
        model = DebertaV2ForSequenceClassification(DebertaV2Config(**DEBERTA_V3_LARGE))
        ids = torch.zeros(n_seqs, min(seq_len, DEBERTA_V3_LARGE["max_position_embeddings"]),
                          dtype=torch.long)
        with FlopCounterMode(display=False) as counter:
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    return counter.get_total_flops()


def decode_bytes(cfg, n_seqs, prompt_len, response_len, weight_bytes, cache_bytes):
    """The fewest bytes the sampler's decoding steps (response_len - 1 after the prompt's forward)
    must read from memory: every weight once per step (the embedding table only when it is also the
    output layer: otherwise a step reads n_seqs of its rows), and each sequence's KV cache (2 x
    layers x KV heads x head_dim per token) up to the current position."""
    from transformers import Qwen3Config, Qwen3ForCausalLM
    with torch.device("meta"):
        # tied: counted once
        params = sum(p.numel() for p in Qwen3ForCausalLM(Qwen3Config(**cfg)).parameters())
    if not cfg["tie_word_embeddings"]:
        params -= cfg["vocab_size"] * cfg["hidden_size"]
    per_token = 2 * cfg[
        "num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"] * cache_bytes
    return sum(params * weight_bytes + n_seqs * (prompt_len + t) * per_token
               for t in range(1, response_len))


def decode_bound(shape, n_seqs, prompt_len, response_len, bandwidth, dtype):
    """(bytes the decoding steps read, the tokens/s the bandwidth allows them): weights and cache in
    dtype's size (bf16 under a GPU's autocast, float32 on a CPU)."""
    size = torch.tensor([], dtype=dtype).element_size()
    read = decode_bytes(SHAPES[shape], n_seqs, prompt_len, response_len, size, size)
    return read, n_seqs * (response_len - 1) * bandwidth / read


def shape_flops(shape, n_seqs, prompt_len, response_len, epochs, qwen3_reward, lora=False,
                checkpointing=False):
    """Matmul FLOPs per PPO step and phase at these shapes (from forward_flops and reward_flops):
    the rollout's prompt forward and decoding steps; the reward model; the policy's (when epochs >
    1), the reference's and the critic's forwards over the whole sequences (logits only at the
    response tokens); `epochs` passes of forward and backward for policy and critic: 3x a forward
    (the backward's input and weight gradients), 2x with LoRA (the frozen base needs no weight
    gradients; the adapters' own products are left out), one forward more with gradient
    checkpointing."""
    cfg, T, Tr = SHAPES[shape], prompt_len + response_len, response_len
    generate = forward_flops(cfg, n_seqs, prompt_len, 1) + sum(
        forward_flops(cfg, n_seqs, 1, 1, context=prompt_len + t) for t in range(1, response_len))
    logits, values = forward_flops(cfg, n_seqs, T, Tr), forward_flops(cfg, n_seqs, T, 0)
    passes = (2 if lora else 3) + (1 if checkpointing else 0)
    return {"time_generate": generate, "time_reward": reward_flops(shape, n_seqs, T, qwen3_reward),
            "time_forward": (2 if epochs > 1 else 1) * logits + values,
            "time_update": epochs * passes * (logits + values)}


def measure_shape(shape, batch, prompt_len, response_len, epochs, steps, warmup, extra=(),
                  qwen3_reward=None):
    """Builds (once) and times `shape` with ppo.py's own per-phase clocks; beside each phase its
    matmul FLOPs and the fraction of the matmul peak measured in the same process (bf16 on a GPU,
    where the models compute under bf16 autocast; float32 on a CPU), and for decoding the bytes it
    must read against the measured bandwidth. Returns the summary with "flops", "limits" and
    "decode" added."""
    folder = build_shape(shape, prompt_len, qwen3_reward)
    settings = merge_settings(shape_settings(folder, batch, prompt_len, response_len,
                                                       epochs), extra)
    on_gpu = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if on_gpu else ("cpu", torch.float32)
    peak = functools.partial(matmul_peak, device, dtype, n=8192 if on_gpu else 2048, seconds=2)
    before = peak()
    summary = measure(settings, steps, warmup)
    # measured before and after the steps: a GPU that idled starts at a low clock
    peak = max(before, peak())
    bandwidth = memory_bandwidth(device)
    Tr, cfg = round(summary["response_length"]), load_config(settings, ppo.TABLES)
    flops = shape_flops(shape, batch, prompt_len, Tr, epochs, qwen3_reward_in(folder),
                        cfg.LORA_RANK > 0, cfg.GRADIENT_CHECKPOINTING)
    flops["step_time"] = sum(flops.values())
    read, bound = decode_bound(shape, batch, prompt_len, Tr, bandwidth, dtype)
    # decoding's share of the generate phase: the prompt's forward is compute-bound and timed with
    # it; the bound below is for the (Tr - 1) decoding steps, the measured rate for the whole phase
    # (a lower bound on decoding's)
    summary.update(flops=flops, limits={"matmul_peak": peak, "bandwidth": bandwidth,
                                        "dtype": str(dtype)},
                   decode={"bytes": read, "steps": Tr - 1, "tokens": batch * Tr,
                           "bound_tokens_per_sec": bound},
                   shape={"shape": shape, "batch": batch, "prompt_len": prompt_len,
                          "response_len": Tr,
                          "epochs": epochs})
    return summary


def measure_decode(shape, batch, prompt_len, response_len, compiled, bandwidth, repeats=2,
                   copy=None):
    """The trainer's sampler alone (ppo.sample under the trainer's autocast, as PPOTrainer.generate
    calls it) on build_shape's policy: tokens/s of `repeats` rollouts of batch x response_len tokens
    (no EOS: random weights) after one warm-up rollout (which compiles, with compiled), against
    decode_bytes' bandwidth bound. copy: sample from a DTYPE copy of the float32 weights, as
    ROLLOUT_COPY does (None: where DTYPE is 16-bit, as its "auto")."""
    import time
    folder = build_shape(shape, prompt_len)
    on_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    dtype = resolve_dtype("auto", device)
    # master weights, as the trainer's
    model = load_causal_lm(f"{folder}/policy", device, torch.float32)
    copy = dtype != torch.float32 if copy is None else copy
    if copy:
        model = dtype_copy(model, dtype)
    rows = [json.loads(line)["prompt"] for line in open(f"{folder}/prompts.jsonl")][:batch]
    tok = load_tokenizer(f"{folder}/policy", "ACTOR_MODEL")
    ids = tok(rows, return_tensors="pt")["input_ids"].to(device)
    mask, eos = torch.ones_like(ids), torch.tensor([tok.eos_token_id], device=device)
    seconds, sync = [], torch.cuda.synchronize if on_gpu else (lambda: None)
    for i in range(repeats + 1):
        uniforms = ppo.uniforms_for(i, 0, batch, slice(None))
        sync()
        start = time.perf_counter()
        with ppo.autocast(device, dtype):
            out, _ = ppo.sample(model, ids, mask, response_len, 1.0, eos, tok.pad_token_id,
                                uniforms, None, compiled)
        sync()
        seconds.append(time.perf_counter() - start)
    tokens = batch * out.shape[1]
    bound = decode_bound(shape, batch, prompt_len, response_len, bandwidth, dtype)[1]
    rate = tokens / statistics.mean(seconds[1:])
    return {"compiled": compiled, "copy": copy, "first_seconds": seconds[0],
            "tokens_per_sec": rate,
            "bound_tokens_per_sec": bound,
            "of_bound": rate / bound, "batch": batch, "prompt_len": prompt_len,
            "response_len": out.shape[1]}


def shape_table(summary):
    """The per-phase table of measure_shape: seconds, GFLOP, achieved GFLOP/s and its share of the
    matmul peak; decoding's bytes against the bandwidth."""
    lim, dec, s = summary["limits"], summary["decode"], summary["shape"]
    lines = [
        f"{s['shape']}: {s['batch']} x ({s['prompt_len']} + {s['response_len']}) tokens, "
        f"{s['epochs']} epochs; matmul peak {lim['matmul_peak'] / 1e9:.0f} GFLOP/s "
        f"({lim['dtype'].removeprefix('torch.')}), bandwidth {lim['bandwidth'] / 1e9:.1f} GB/s", "",
        "| phase | seconds per step | GFLOP | GFLOP/s | of matmul peak |",
        "|---|---|---|---|---|"]
    for k in PHASES:
        sec, fl = summary[k]["mean"], summary["flops"][k]
        lines.append(
            f"| {k.removeprefix('time_')} | {sec:.3f} +- {summary[k]['stdev']:.3f} | "
            f"{fl / 1e9:.1f} | {fl / sec / 1e9:.1f} | {100 * fl / sec / lim['matmul_peak']:.0f}% |")
    gen = summary["time_generate"]["mean"]
    lines.append(f"\ngenerate: {dec['tokens'] / gen:.0f} tokens/s; decoding reads at least "
                 f"{dec['bytes'] / dec['steps'] / 1e6:.0f} MB per step (weights and KV cache): "
                 f"{dec['bytes'] / gen / 1e9:.1f} GB/s over the whole phase, "
                 f"{100 * dec['bytes'] / gen / lim['bandwidth']:.0f}% of the bandwidth; bound "
                 f"{dec['bound_tokens_per_sec']:.0f} tokens/s")
    return "\n".join(lines)


class Values(torch.nn.Module):
    """A sequence classifier read at every position, as machinery/models.py's ValueModel: one
    module, so that FSDP2's root hooks gather the backbone's root weights and the score head when it
    runs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, attn):
        inner = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return inner.score(
            inner.base_model(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state)


def measure_sharded_memory(size="0.6B", lora_rank=0, checkpointing=False, micro_batch=4,
                           prompt_len=512, response_len=256, device="cuda"):
    """measure_memory's two PPO updates with every model sharded by distributed.shard_model over
    torchrun's processes (python -m torch.distributed.run --nproc_per_node=N bench/speed.py --memory
    --sharded): the models are built with their parameters on the meta device (parameters_on_meta),
    sharded, then given storage on this process's device (random values: only the shapes count), and
    the critic trains after the policy, as in ppo.py. Returns this process's peak GiB (NaN on a
    CPU)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from transformers import (DebertaV2Config, DebertaV2ForSequenceClassification, Qwen3Config,
                              Qwen3ForCausalLM, Qwen3ForSequenceClassification)

    from machinery import distributed
    ranks = ppo.Ranks()
    ranks.start(always=True)
    dev = torch.device(f"cuda:{ranks.local_rank}" if device == "cuda" else device)
    on_gpu, bf16 = dev.type == "cuda", torch.bfloat16
    if on_gpu:
        torch.cuda.set_device(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    lora = SimpleNamespace(LORA_RANK=lora_rank, LORA_ALPHA=32, LORA_TARGET_MODULES="all-linear")
    trained_dtype = bf16 if lora_rank else torch.float32
    with parameters_on_meta():
        policy = Qwen3ForCausalLM(Qwen3Config(**QWEN3[size])).to(trained_dtype)
        critic = Qwen3ForSequenceClassification(
            Qwen3Config(**QWEN3[size], num_labels=1)).to(trained_dtype)
        ref = None if lora_rank else Qwen3ForCausalLM(
            Qwen3Config(**QWEN3[size])).eval().requires_grad_(False)
        reward = DebertaV2ForSequenceClassification(
            DebertaV2Config(**DEBERTA_V3_LARGE)).to(bf16).eval()
        if lora_rank:
            policy, critic = add_lora(policy, lora, "CAUSAL_LM"), add_lora(critic, lora, "SEQ_CLS")
    reward.requires_grad_(False)
    if checkpointing:
        for model in (policy, critic):
            enable_gradient_checkpointing(model)
    values = Values(critic)
    models = [m for m in (policy, values, ref, reward) if m is not None]
    # fully_shard leaves them empty
    buffers = [{name: b.to(dev) for name, b in m.named_buffers()} for m in models]
    mesh = init_device_mesh(dev.type, (ranks.world,))
    for model in filter(None, (policy, values, ref)):
        distributed.shard_model(model, mesh, bf16)
    distributed.shard_model(reward, mesh)
    for model, saved in zip(models, buffers):
        # storage for this process's shards (and the buffers, restored below)
        model.to_empty(device=dev)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.02)
            for name, b in model.named_buffers():
                b.copy_(saved[name])
    optimizers = [ppo.make_optimizer(policy, 1e-6), ppo.make_optimizer(values, 1e-6)]
    vocab = min(QWEN3[size]["vocab_size"], DEBERTA_V3_LARGE["vocab_size"])
    ids = torch.randint(0, vocab, (micro_batch, prompt_len + response_len), device=dev)
    attn = torch.ones_like(ids)
    for _ in range(2):  # the second update runs with AdamW's moments allocated
        with torch.no_grad(), ppo.autocast(dev, bf16):
            if ref is not None:
                ppo.response_logprobs(ref, ids, attn, prompt_len, 1.0, bf16)
            reward(input_ids=ids[:, :512], attention_mask=attn[:, :512])
        logp, entropy = ppo.response_logprobs(policy, ids, attn, prompt_len, 1.0, bf16)
        (-(logp.mean() + 0.01 * entropy.mean())).backward()
        with ppo.autocast(dev, bf16):
            critic_values = values(ids, attn)
        critic_values.float().square().mean().backward()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated(dev) / 2 ** 30 if on_gpu else float("nan")
    dist.barrier()
    return peak


def memory_table(measure=False):
    lines = [
        "| Qwen3-0.6B + DeBERTa-v3-large, bf16 | policy | reference | critic | reward model | "
        "activations, one micro-batch of 4 x (512 + 256) tokens | total "
        "|", "|---|---|---|---|---|---|---|"]
    for name, kw in (("full fine-tuning", {}),
                     ("full, gradient checkpointing", {"checkpointing": True}),
                     ("LoRA r=16", {"lora_rank": 16}),
                     ("LoRA r=16, gradient checkpointing", {
                         "lora_rank": 16, "checkpointing": True})):
        e = memory_estimate(**kw)
        # The policy's and the critic's updates run at the same time (two threads), so both
        # activations count.
        act = e["activations (policy update)"] + e["activations (critic update)"]
        total = e["policy"] + e["reference"] + e["critic"] + e["reward model"] + act
        measured = f" | {measure_memory(**kw):.1f} GiB" if measure else ""
        lines.append(f"| {name} | {e['policy']:.1f} | {e['reference']:.1f} | {e['critic']:.1f} | "
                     f"{e['reward model']:.1f} | {act:.1f} | {total:.1f} GiB{measured} |")
    if measure:
        lines[0] += f" measured peak on {torch.cuda.get_device_name(0)} |"
        lines[1] += "---|"
    return "\n".join(lines)


def compare_with_trl_ppo(trl_python, out, seeds, steps, shape=None):
    """Ours and TRL's PPOTrainer on the same models, prompts and settings, one run after the other
    for each seed (never side by side: they would share the cores), then evaluate.py's independent
    evaluation (VADER on the held-out prompts) of every final policy. Seconds per step are timed
    inside each training loop (ours: the `elapsed` of the last metrics row; TRL: around
    trainer.train()); whole-process time includes imports and loading. shape: (name, batch,
    prompt_len, response_len, epochs) runs build_shape's random-weight models with a Qwen3 reward
    model instead (minibatches of 8, learning rate 1e-6; nothing to evaluate). Returns the report's
    rows."""
    import statistics

    from bench import compare
    from tasks import sentiment
    if shape is None:
        sentiment.build(PAD_POLICY_DIR, pad_token="<|pad|>")
        sentiment.build_reward_model(PAD_POLICY_DIR, PAD_REWARD_DIR)
        ours = merge_settings(TRL_PPO_ARGS, [f"--ACTOR_MODEL={PAD_POLICY_DIR}",
                                                       f"--CRITIC_MODEL={PAD_REWARD_DIR}",
                                                       f"--REWARD_MODEL={PAD_REWARD_DIR}"])
        theirs, policy, what = [PAD_POLICY_DIR, PAD_REWARD_DIR], PAD_POLICY_DIR, \
            "PPO steps of 32 prompts, 4 epochs x 4 minibatches of 8, 16 new tokens"
    else:
        name, batch, prompt_len, response_len, epochs = shape
        folder = build_shape(name, prompt_len, qwen3_reward=True)
        ours = merge_settings(TRL_PPO_ARGS,
                                        shape_settings(folder, batch, prompt_len, response_len,
                                                       epochs))
        theirs = [f"{folder}/policy", f"{folder}/reward", f"{folder}/prompts.jsonl", str(batch),
                  str(response_len),
                  str(epochs), "1e-6"]
        what = (
            f"PPO steps at the {name} shape (random weights): {batch} prompts of {prompt_len} "
            f"tokens, {response_len} new tokens, {epochs} epochs x {batch // min(batch, 8)} "
            "minibatches")
    runs = []
    for seed in seeds:
        for who in ("ours", "trl"):
            run_dir = os.path.join(out, f"{who}-{shape[0] + '-' if shape else ''}seed{seed}")
            if who == "ours":
                cmd = [sys.executable, os.path.join(HERE, "ppo.py"), *ours, f"--SEED={seed}",
                       f"--MAX_STEPS={steps}", f"--OUTPUT_DIR={run_dir}"]
            else:
                cmd = [trl_python, os.path.join(HERE, "bench", "trl_runner.py"), "ppo", run_dir,
                       str(seed),
                       str(steps), *theirs]
            wall = compare.timed(cmd, who)
            if who == "ours":
                loop = plotting.read_metrics(os.path.join(run_dir, "metrics.jsonl"))[-1]["elapsed"]
            else:
                with open(os.path.join(run_dir, "trl_log.json")) as f:
                    loop = json.load(f)["train_seconds"]
            runs.append({"who": who, "seed": seed, "wall": wall, "per_step": loop / steps,
                         "policy": os.path.join(run_dir, "policy")})
    if shape is None:
        evals = compare.evaluate_all([policy] + [r["policy"] for r in runs], [])
        for run, e in zip(runs, evals[1:]):
            run["gain"] = e["gain"]
    else:  # random weights: no initial policy to evaluate against, no gains
        evals = [{"mean": math.nan}]
        for run in runs:
            run["gain"] = math.nan

    def stat(who, key):
        v = [r[key] for r in runs if r["who"] == who]
        if any(math.isnan(x) for x in v):  # random weights: nothing was evaluated
            return math.nan, math.nan
        return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

    ratios = [t["per_step"] / o["per_step"] for o, t in zip(runs[::2], runs[1::2])]
    scored = ("nothing to evaluate (random weights)" if shape else
              f"held-out gain by evaluate.py over the initial policy ({evals[0]['mean']:+.3f})")
    lines = [
        f"{steps} {what}; seeds {', '.join(map(str, seeds))}, each pair run one after the other; "
        f"{scored}; mean +- std over seeds.", "",
        "| | seconds per step (in loop) | whole process (s) | held-out reward gain |",
        "|---|---|---|---|"]
    for who, name in (("ours", "this trainer"), ("trl", "TRL 1.0.0 PPOTrainer")):
        (t, ts), (w, ws), (g, gs) = stat(who, "per_step"), stat(who, "wall"), stat(who, "gain")
        lines.append(
            f"| {name} | {t:.3f} +- {ts:.3f} | {w:.0f} +- {ws:.0f} | {g:+.3f} +- {gs:.3f} |")
    lines.append(
        f"\nTRL / ours, seconds per step, per seed: {', '.join(f'{r:.2f}x' for r in ratios)} (mean "
        f"{statistics.mean(ratios):.2f}x; ours / TRL "
        f"{statistics.mean(1 / r for r in ratios):.2f}x)")
    md = "\n".join(lines)
    print("\n" + md)
    with open(os.path.join(out, f"trl_ppo{'_' + shape[0] if shape else ''}.md"), "w") as f:
        f.write(md + "\n")
    return {"runs": runs, "ratios": ratios, "initial": evals[0]["mean"]}


def check_arguments(args, settings):
    """Bad input is one line and exit 2 before anything is built or measured, as for ppo.py: the
    shape names, the step counts, the --out folder, the settings after -- (read as ppo.py reads
    them), and TRL's run folders, which must be new (a benchmark never replaces a run)."""
    try:
        unknown = [s for s in (args.shapes or "").split(",") if args.shapes and s not in SHAPES]
        if unknown:
            raise Refusal(
                f"--shapes={args.shapes}: unknown {', '.join(unknown)}; the shapes are "
                f"{', '.join(SHAPES)}")
        if args.steps < (0 if args.shapes and args.trl else 1):
            raise Refusal(
                f"--steps must be at least 1 (0 only with --shapes and --trl: the side by side "
                f"alone), got {args.steps}")
        if args.warmup < 0 or args.trl_steps < 1:
            raise Refusal(
                f"--warmup must be at least 0 and --trl-steps at least 1, got {args.warmup} and "
                f"{args.trl_steps}")
        if not os.path.isdir(args.out):
            raise Refusal(
                f"--out={args.out!r} is no folder: create it first, or give an existing one")
        load_config(settings, ppo.TABLES)
        trl_runs = os.path.join(args.out, "runs", "bench-trl")
        if args.trl and os.path.isdir(trl_runs) and os.listdir(trl_runs):
            raise Refusal(
                f"{trl_runs} holds the runs of an earlier comparison: move or remove it first "
                f"(a benchmark never replaces runs)")
    except Refusal as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def main(argv=None):
    parser = script.ArgumentParser(prog="bench/speed.py", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sweep", action="store_true",
                        help="also time MAX_NEW_TOKENS x BATCH_SIZE")
    parser.add_argument("--out", default=".")
    parser.add_argument("--trl", metavar="PYTHON",
                        help="also run TRL's PPOTrainer side by side, with this Python (a "
                        "virtualenv with trl==1.0.0, the last release with trl.experimental.ppo)")
    parser.add_argument("--trl-steps", type=int, default=100, help="with --trl: PPO steps per run")
    parser.add_argument("--seeds", default="0,1,2", help="with --trl: seeds, one pair of runs each")
    parser.add_argument("--memory", action="store_true",
                        help="print the memory estimate for Qwen3-0.6B + DeBERTa-v3-large on one "
                        "GPU (and, with a GPU, the measured peak), the plan for Qwen3-0.6B to 8B "
                        "on 1, 2 and 8 GPUs with and without FSDP2, and exit")
    parser.add_argument("--sharded", action="store_true",
                        help="with --memory, under torchrun: measure the peak "
                        "per GPU with every model sharded (FSDP2) beside the estimate, for --sizes")
    parser.add_argument("--sizes", default="0.6B",
                        help="with --memory --sharded: Qwen3 sizes, e.g. 0.6B,1.7B")
    parser.add_argument("--limits", action="store_true",
                        help="print this machine's measured matmul peak and "
                        "memory bandwidth (the yardsticks of issue 15) and exit")
    parser.add_argument("--shapes", metavar="NAMES",
                        help="time PPO steps at real shapes with random weights (medium, 0.6B, "
                        "1.7B, ...: bench.SHAPES), per phase against the measured matmul peak and "
                        "bandwidth, and exit")
    parser.add_argument("--decode", action="store_true",
                        help="with --shapes: time the sampler alone, as it is "
                        "and with COMPILE_DECODE, against the bandwidth bound, and exit")
    parser.add_argument("--compiled-only", action="store_true",
                        help="with --decode: COMPILE_DECODE on the rollout copy alone")
    parser.add_argument("--batch", type=int, default=16, help="with --shapes: prompts per step")
    parser.add_argument("--prompt-len", type=int, default=64, help="with --shapes: prompt tokens")
    parser.add_argument("--response-len", type=int, default=48,
                        help="with --shapes: response tokens")
    parser.add_argument("--epochs", type=int, default=4, help="with --shapes: PPO epochs")
    args, settings = parser.parse_known_args(argv)
    settings = [a for a in settings if a != "--"]
    check_arguments(args, settings)
    if args.shapes:
        run_files.quiet_progress_bars()
        report = {}
        for shape in args.shapes.split(","):
            if args.decode:
                bandwidth = memory_bandwidth("cuda" if torch.cuda.is_available() else "cpu")
                # the default sampler and COMPILE_DECODE on the rollout copy; on a GPU also
                # COMPILE_DECODE on the float32 master weights under autocast, side by side
                variants = [(False, None), (True, None)] + \
                    ([(True, False)] if torch.cuda.is_available() else [])
                if args.compiled_only:
                    variants = [(True, None)]
                report[shape] = [measure_decode(shape, args.batch, args.prompt_len,
                                                args.response_len, c, bandwidth, copy=copy)
                                 for c, copy in variants]
                for r in report[shape]:
                    print(
                        f"{shape} decode, "
                        f"{'COMPILE_DECODE' if r['compiled'] else 'default sampler'}"
                        f"{', rollout copy' if r['copy'] else ', master weights'}: {r['batch']} "
                        f"x ({r['prompt_len']} + {r['response_len']}) tokens: "
                        f"{r['tokens_per_sec']:.0f} tokens/s, {100 * r['of_bound']:.0f}% of the "
                        f"bandwidth bound {r['bound_tokens_per_sec']:.0f} (first rollout "
                        f"{r['first_seconds']:.1f} s)", flush=True)
                continue
            report[shape] = {}
            if args.steps:  # --steps=0 --trl: the side by side alone
                report[shape] = measure_shape(shape, args.batch, args.prompt_len, args.response_len,
                                              args.epochs, args.steps, args.warmup, settings)
                print(shape_table(report[shape]) + "\n", flush=True)
            if args.trl:
                report[shape]["trl_ppo"] = compare_with_trl_ppo(
                    args.trl, os.path.join(args.out, "runs", "bench-trl"),
                    [int(x) for x in args.seeds.split(",")],
                    args.trl_steps, shape=(shape, args.batch, args.prompt_len, args.response_len,
                                           args.epochs))
        with open(os.path.join(args.out, "bench_shapes.json"), "w") as f:
            json.dump(report, f, indent=2)
        return
    if args.limits:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtypes = (torch.float32, torch.bfloat16) if device == "cuda" else (torch.float32,)
        for dtype in dtypes:
            print(f"{device} matmul peak, {str(dtype).removeprefix('torch.')}: "
                  f"{matmul_peak(device, dtype) / 1e9:.0f} GFLOP/s")
        print(f"{device} memory bandwidth (copy): {memory_bandwidth(device) / 1e9:.1f} GB/s")
        return
    if args.memory and args.sharded:  # under torchrun: each process measures its own GPU
        sizes = args.sizes.split(",")
        ranks = ppo.Ranks()
        for size in sizes:
            for setup, kw in SETUPS:
                try:
                    peak = measure_sharded_memory(size=size, **kw)
                except torch.OutOfMemoryError:
                    peak = float("inf")
                estimate = per_gpu_peak(memory_estimate(size=size, gpus=ranks.world, sharded=True,
                                                        **kw), "fsdp")
                if ranks.writes:
                    print(f"| {size}, {setup} | {ranks.world} | {estimate:.1f} | {peak:.1f} |",
                          flush=True)
        ranks.stop()
        return
    if args.memory:
        print(memory_table(measure=torch.cuda.is_available()))
        print()
        print(memory_plan())
        return
    run_files.quiet_progress_bars()
    from tasks import sentiment
    sentiment.build()
    try:
        main_summary = measure(settings, args.steps, args.warmup)
    except Refusal as e:  # what needs the models (a setting that does not fit them)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    device = torch.cuda.get_device_name(
        0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    report = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
              "settings": settings, "steps": args.steps, "warmup": args.warmup,
              "phases": main_summary}
    print(
        f"{device}, torch {torch.__version__}; {args.steps} timed steps after {args.warmup} "
        "warm-up\n")
    print(phase_table(main_summary))
    if args.sweep:
        print("\n| MAX_NEW_TOKENS \\ BATCH_SIZE | 8 | 16 | 32 |\n|---|---|---|---|")
        report["sweep"] = []
        for length in (8, 16, 32):
            cells = []
            for batch in (8, 16, 32):
                s = measure(merge_settings(settings,
                                                     [f"--MAX_NEW_TOKENS={length}",
                                                      f"--BATCH_SIZE={batch}",
                                                          f"--MINI_BATCH_SIZE={min(batch, 8)}",
                                                          f"--MICRO_BATCH_SIZE={min(batch, 8)}"]),
                            max(3, args.steps // 2), 1)
                report["sweep"].append({"max_new_tokens": length, "batch_size": batch,
                                        "step_time": s["step_time"]["mean"],
                                        "tokens_per_sec": s["tokens_per_sec"]})
                cells.append(f"{s['step_time']['mean']:.2f} s")
            print(f"| {length} | " + " | ".join(cells) + " |")
    if args.trl:
        report["trl_ppo"] = compare_with_trl_ppo(args.trl,
                                                 os.path.join(args.out, "runs", "bench-trl"),
                                                 [int(x) for x in args.seeds.split(",")],
                                                 args.trl_steps)
    path = os.path.join(args.out, "bench.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    sys.exit(script.run(main))
