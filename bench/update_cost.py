"""What the update's micro-batches cost at Qwen3-0.6B shapes (random weights; its 151,936-token
vocabulary): the peak memory of one micro-batch's forward and backward for each LOGPROB_CHUNK, and
the FLOPs of a minibatch of mixed-length responses split by row count (MICRO_BATCH_SIZE) or packed
by a token budget (MICRO_BATCH_TOKENS).

    python bench/update_cost.py memory   # peak RSS per chunk size, each in a fresh process (CPU)
    python bench/update_cost.py flops    # matmul FLOPs of row-count and token-budget micro-batches

Memory is the process's peak RSS above what it held after building the model and its inputs, so the
weights are left out; the model keeps LAYERS of Qwen3-0.6B's 28 blocks (--layers), since the
logits, whose memory the chunks cut, do not depend on the depth. Writes JSON lines to stdout.
"""
import argparse
import json
import os
import resource
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
from machinery import script  # noqa: E402
import ppo  # noqa: E402
from bench.speed import QWEN3_06B  # noqa: E402
from machinery.distributed import micro_batches  # noqa: E402


def build(layers):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(0)
    return Qwen3ForCausalLM(Qwen3Config(**dict(QWEN3_06B, num_hidden_layers=layers)))


def micro_batch_loss(model, ids, Tp, chunk):
    """The policy loss's forward and backward on one micro-batch, as PPOTrainer.policy_gradients
    runs it (the entropy as a statistic)."""
    mask = torch.ones_like(ids)
    logp, entropy = ppo.response_logprobs(model, ids, mask, Tp, 1.0, entropy="value", chunk=chunk)
    (logp.sum() / logp.numel()).backward()
    return entropy


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def memory_one(args):
    model = build(args.layers)
    ids = torch.randint(0, 151936, (args.rows, args.prompt_len + args.response_len),
                        generator=torch.Generator().manual_seed(0))
    # a first pass builds every lazy buffer; the peak of the second is the measurement's
    chunk = None if args.chunk == 0 else args.chunk
    micro_batch_loss(model, ids[:1, :args.prompt_len + 8], args.prompt_len, chunk)
    model.zero_grad(set_to_none=False)  # gradients allocated: they are not the logits' memory
    base = peak_rss_gib()
    micro_batch_loss(model, ids, args.prompt_len, chunk)
    print(json.dumps({"chunk": chunk, "rows": args.rows, "tokens": ids.numel(),
                      "logits_gib_float32": args.rows * args.response_len * 151936 * 4 / 2 ** 30,
                      "peak_above_model_gib": round(peak_rss_gib() - base, 3)}), flush=True)


def memory(args):
    for chunk in args.chunks:
        subprocess.run([sys.executable, __file__, "memory-one", f"--chunk={chunk}",
                        f"--layers={args.layers}", f"--rows={args.rows}",
                        f"--prompt-len={args.prompt_len}", f"--response-len={args.response_len}"],
                       check=True)


def flops(args):
    """Matmul FLOPs of one minibatch's policy forwards and backwards at Qwen3-0.6B's shapes (all 28
    blocks), 3x bench/speed.py's forward_flops per micro-batch (which tests/test_bench.py checks
    against torch's FlopCounterMode): response lengths drawn uniformly from 1 .. response_len,
    prompts of prompt_len tokens, each micro-batch cut after its longest response."""
    from bench.speed import forward_flops
    g = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(1, args.response_len + 1, (args.minibatch,), generator=g)
    Tp, rows = args.prompt_len, torch.arange(args.minibatch)
    valid = int(lengths.sum()) + Tp * args.minibatch
    results = {}
    for name, micros in (
            ("micro_batch_size", micro_batches(rows, lengths, Tp, args.micro_size)),
            ("micro_batch_tokens", micro_batches(rows, lengths, Tp, args.micro_size,
                                                 args.budget))):
        tokens = flops = 0
        for micro in micros:
            Tr = int(lengths[micro].max())
            tokens += len(micro) * (Tp + Tr)
            flops += 3 * forward_flops(QWEN3_06B, len(micro), Tp + Tr, Tr)
        results[name] = {"micro_batches": len(micros), "tokens_computed": tokens,
                         "tflops": round(flops / 1e12, 3)}
    base, packed = results["micro_batch_size"], results["micro_batch_tokens"]
    print(json.dumps({
        "seed": args.seed, "minibatch": args.minibatch, "micro_size": args.micro_size,
        "budget": args.budget, "valid_tokens": valid, **results,
        "padding_share_row_count": round(1 - valid / base["tokens_computed"], 4),
        "padding_share_packed": round(1 - valid / packed["tokens_computed"], 4),
        "flops_cut": round(1 - packed["tflops"] / base["tflops"], 4)}))


def main(argv=None):
    parser = script.ArgumentParser(prog="bench/update_cost.py", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["memory", "flops", "memory-one"])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=4, help="memory: rows per micro-batch")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--response-len", type=int, default=512)
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 1024, 256],
                        help="memory: LOGPROB_CHUNK values (0: None, the whole logits)")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--minibatch", type=int, default=32, help="flops: rows per minibatch")
    parser.add_argument("--micro-size", type=int, default=4, help="flops: MICRO_BATCH_SIZE")
    parser.add_argument("--budget", type=int, default=4 * 640, help="flops: MICRO_BATCH_TOKENS")
    parser.add_argument("--seed", type=int, default=0, help="flops: the lengths' draw")
    args = parser.parse_args(argv)
    for name in ("layers", "rows", "prompt_len", "response_len", "minibatch", "micro_size",
                 "budget"):
        value = getattr(args, name)
        if value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if min(args.chunks + [args.chunk]) < 0:
        parser.error("--chunks and --chunk must be at least 0 (0: the whole logits)")
    {"memory": memory, "flops": flops, "memory-one": memory_one}[args.what](args)


if __name__ == "__main__":
    sys.exit(script.run(main))
