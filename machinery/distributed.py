"""torchrun's processes: data parallelism, and FSDP2 sharding of the models over them (SHARDING).

Every process runs the same program on its share of each batch and rank 0 writes. Without sharding
each process holds every model whole and sum_gradients adds the gradients up; with it (PyTorch's
fully_shard, "FSDP2") each holds 1/world of every model's weights, gradients and optimiser states,
gathers a block's weights just before the block runs and reduce-scatters its gradients in the
backward pass. Kept apart from ppo.py, which imports what it needs from here, so that the trainer
reads as the algorithm; docs/distributed.md says when to shard.

Rules a sharded model imposes, each handled where it applies in ppo.py:
  * two models' collectives must not interleave differently on different ranks: the critic's
    gradients are summed over a group of their own, and sharded, the critic trains after the policy;
  * every forward and backward is a collective (its blocks' all-gathers): every rank runs the same
    number of them, so a rank with fewer rows in a minibatch runs a row with loss weight 0
    (micro_batch_count), sampling stops when every rank's rows are done (Ranks.all), and the
    held-out rows are padded to an equal share;
  * the gathered weights are reused buffers, and one first made under torch.inference_mode() cannot
    be used by a later training forward, so sharded models run under no_grad (no_grad_for);
"""

import os

import torch
import torch.distributed as dist

from .script import Refusal


class Ranks:
    """This process's place among the processes torchrun started (one process without torchrun) and
    the few collectives the trainer needs. Every rank runs the same program on its share of each
    batch; rank 0 writes."""

    def __init__(self, env=os.environ):
        self.world, self.rank = int(env.get("WORLD_SIZE", 1)), int(env.get("RANK", 0))
        self.local_rank = int(env.get("LOCAL_RANK", 0))
        self.local_world = int(env.get("LOCAL_WORLD_SIZE", 1))
        self.torchrun = "MASTER_ADDR" in env  # started by torchrun (perhaps with one process)
        self.critic_group = None

    @property
    def active(self):
        return self.world > 1

    @property
    def writes(self):
        """Rank 0 alone writes files and speaks."""
        return self.rank == 0

    def start(self, always=False):
        """Joins the process group: gloo for tensors on CPUs, NCCL for tensors on GPUs. always: even
        for one process (FSDP2 needs a group to shard over). The critic's gradients are summed over
        a group of their own (critic_group): without sharding the critic trains in a thread beside
        the policy, and the collectives of one group must come in the same order on every rank."""
        if (self.active or (always and self.torchrun)) and not dist.is_initialized():
            gpus = torch.cuda.is_available() and dist.is_nccl_available()
            backend = "cpu:gloo,cuda:nccl" if gpus else "gloo"
            dist.init_process_group(backend=backend)
            self.critic_group = dist.new_group(backend=backend)

    def stop(self):
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def my_rows(self, n):
        """This rank's slice of n rows split evenly in rank order."""
        size = n // self.world
        return slice(self.rank * size, (self.rank + 1) * size)

    def gather_rows(self, x):
        """(b, ...) on every rank -> (world * b, ...), the ranks' rows in rank order (identity on
        one process)."""
        if not self.active:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def sum_(self, x, group=None):
        """Sums x over the ranks (in process group `group`, by default all), in place."""
        if self.active:
            dist.all_reduce(x, group=group)
        return x

    def max_(self, value):
        """The largest of the ranks' integers, on every rank."""
        if not self.active:
            return value
        x = torch.tensor([value])
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
        return int(x)

    def any(self, flag):
        """True on every rank when flag is true on any."""
        return bool(self.sum_(torch.tensor([float(flag)]))) if self.active else bool(flag)

    def all(self, flag):
        """True on every rank when flag is true on all."""
        return not self.any(not flag)

    def all_objects(self, obj):
        """[obj of rank 0, obj of rank 1, ...] on every rank (a pickled all-gather)."""
        objs = [None] * self.world
        dist.all_gather_object(objs, obj)
        return objs

    def first_object(self, obj):
        """The first non-None obj over the ranks, on every rank (a pickled all-gather: rare events
        only)."""
        if not self.active:
            return obj
        return next((o for o in self.all_objects(obj) if o is not None), None)

    def barrier(self):
        if self.active:
            dist.barrier()

    def on_every_rank(self, error_type, fn, *args):
        """fn(*args): an error_type it raises on any rank is raised on every rank (every rank enters
        the collective; the message comes from the one that failed), so all stop together."""
        if not self.active:
            return fn(*args)
        error = result = None
        try:
            result = fn(*args)
        except error_type as e:
            error = e
        if self.any(error is not None):
            message = self.first_object(str(error) if error else None)
            raise error or error_type(f"on another process: {message}")
        return result

    def all_rows(self, width, *xs):
        """Per-row tensors of this rank's rows -> the whole batch's, in rank order (None stays None;
        on one process, each x itself). Token columns are padded to `width` first, so that every
        rank sends one shape."""
        return [x if x is None or not self.active else self.gather_rows(
            (torch.cat([x, x.new_zeros(x.shape[0], width - x.shape[1])], 1) if x.dim() == 2 else x)
            .float()).to(x.dtype) for x in xs]

    def sum_statistics(self, stats, device, same=("grad_norm", "critic_grad_norm")):
        """An update's statistics of the whole batch: the sum of every rank's shares; the gradient
        norms (`same`), taken after the gradients were summed, are equal on every rank and pass
        through."""
        if not self.active:
            return stats
        keys = sorted(set().union(*self.all_objects(sorted(stats))))
        zero = torch.zeros((), device=device)
        vec = torch.stack([stats.get(k, zero) / (self.world if k in same else 1) for k in keys])
        return dict(zip(keys, self.sum_(vec)))


def rank_minibatch(mb, my_rows):
    """The rows of global minibatch mb (indices into the whole batch) held by the rank whose rows
    are `my_rows`, as indices into its own rows."""
    mine = mb[(mb >= my_rows.start) & (mb < my_rows.stop)]
    return mine - my_rows.start


def micro_batches(rows, lengths, prompt_width, micro_size, token_budget=None):
    """A minibatch's rows (indices) split into micro-batches, each one forward and backward.
    Without a token budget: consecutive runs of micro_size rows. With one (MICRO_BATCH_TOKENS): the
    rows sorted by response length, longest first, and packed greedily, each micro-batch taking rows
    while (its rows) x (prompt_width + its longest response) stays within token_budget (a row alone
    always goes), so that short responses are not padded to the longest in the minibatch; as verl's
    use_dynamic_bsz and OpenRLHF's max_tokens_per_gpu. lengths (len(rows),): the rows' response
    lengths, on the host. The losses are weighted by the minibatch's totals (ppo.loss_weights), so
    the packing changes no gradient."""
    if token_budget is None:
        return list(rows.split(micro_size))
    order = torch.sort(lengths, descending=True, stable=True).indices
    out, start = [], 0
    while start < len(order):
        # sorted: the first row is the longest, and fixes the micro-batch's width
        fits = max(1, token_budget // (prompt_width + int(lengths[order[start]])))
        out.append(rows[order[start:start + fits]])
        start += fits
    return out


def micro_batch_count(mb, n_rows, world, micro_size, lengths=None, prompt_width=0,
                      token_budget=None):
    """The most micro-batches (micro_batches) that any rank runs for global minibatch mb (indices
    into a batch of n_rows split evenly over `world` ranks; lengths (n_rows,) the whole batch's
    response lengths, with a token budget): with sharding, the number every rank runs."""
    per_rank = n_rows // world
    if token_budget is None:
        held = torch.bincount(mb // per_rank, minlength=world)  # (world,) rows of mb per rank
        return int(-(-held.max() // micro_size))
    held = [mb[mb // per_rank == r] for r in range(world)]  # each rank's rows of mb
    return max(len(micro_batches(rows, lengths[rows], prompt_width, micro_size, token_budget))
               for rows in held)


def sum_gradients(model, ranks, group=None, bucket_size=2 ** 24):
    """Without sharding: sums the model's gradients over the ranks (each rank's loss is already
    weighted by the global minibatch's totals, so the sum is the whole minibatch's gradient). A rank
    that held no row of the minibatch sends zeros. Gradients travel in flat buckets of up to
    bucket_size elements (64 MiB in float32), one collective each, as DDP's buckets do, rather than
    one collective per parameter."""
    if not ranks.active:
        return
    grads = []
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    while grads:
        bucket, size = [], 0
        while grads and (not bucket or size + grads[0].numel() <= bucket_size):
            size += grads[0].numel()
            bucket.append(grads.pop(0))
        flat = ranks.sum_(torch.cat([g.flatten() for g in bucket]), group)
        for g, summed in zip(bucket, flat.split([g.numel() for g in bucket]), strict=True):
            g.copy_(summed.view_as(g))


def weights_fingerprint(model):
    """Two float64 sums over every weight: equal on every rank when the ranks hold the same
    weights."""
    total = torch.zeros(2, dtype=torch.float64)
    for p in model.parameters():
        x = p.detach().double().cpu()
        total += torch.stack([x.sum(), (x * x).sum()])
    return total


# ==================================================================================================
# FSDP2
# ==================================================================================================
def sharding_on(setting, world):
    """SHARDING: "fsdp" shards, "none" does not, "auto" shards under torchrun with two or more
    processes."""
    return setting == "fsdp" or (setting == "auto" and world > 1)


def check_sharding(cfg, ranks):
    """What SHARDING=fsdp needs: processes started by torchrun (a group to shard over); and what it
    does not do yet: compiled decoding (a static cache over a model whose weights are gathered block
    by block is untried)."""
    if cfg.SHARDING == "fsdp" and not ranks.torchrun:
        raise Refusal(
            "SHARDING='fsdp' splits the models over torchrun's processes, but this process was not "
            "started by torchrun: run torchrun --standalone --nproc_per_node=N ppo.py ... (N GPUs, "
            "or CPU processes), or set SHARDING to 'auto' or 'none'")
    if cfg.COMPILE_DECODE and sharding_on(cfg.SHARDING, ranks.world):
        raise Refusal(
            "COMPILE_DECODE=True is not supported with sharded models yet: set "
            "--COMPILE_DECODE=False, or --SHARDING=none when each process holds whole models")
    if cfg.ROLLOUT_COPY is True and sharding_on(cfg.SHARDING, ranks.world):
        raise Refusal(
            "ROLLOUT_COPY=True needs whole models, and these are sharded: set "
            "--ROLLOUT_COPY=auto, or --SHARDING=none when each process can hold the policy twice")


def is_sharded(model):
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def no_grad_for(model):
    """torch.inference_mode() for a whole model (cheapest), torch.no_grad() for a sharded one: FSDP2
    keeps its gathered weights in buffers it reuses, and a buffer first made under inference mode
    cannot be used by a later forward that records a graph ("Inference tensors cannot be saved for
    backward")."""
    return torch.no_grad() if is_sharded(model) else torch.inference_mode()


def blocks(model):
    """The repeated blocks that become FSDP units: the outermost modules whose class transformers
    lists in the model's _no_split_modules (Qwen3DecoderLayer, GPT2Block, ...), in order; for a
    model without that list (DeBERTa-v2 has none), the entries of its longest nn.ModuleList (its
    layers)."""
    names = set()
    for m in model.modules():
        names |= set(getattr(m, "_no_split_modules", None) or ())
    if not names:
        lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
        return list(max(lists, key=len)) if lists else []
    found, prefixes = [], []
    for name, m in model.named_modules():
        if type(m).__name__ in names and not any(name.startswith(p) for p in prefixes):
            found.append(m)
            prefixes.append(name + ".")
    return found


def shard_model(model, mesh, param_dtype=None):
    """fully_shard on each block, then on the root, which takes the rest: embeddings, final norm and
    heads (tied input and output embeddings stay one parameter in one unit). Each block's weights
    are gathered just before it runs and freed after (a trained root's stay gathered until the
    backward). param_dtype (bfloat16 on GPU): the dtype weights are gathered and computed in, with
    float32 shards (the master weights) and float32 gradient reductions (MixedPrecisionPolicy).
    Gradients are summed over the ranks, not averaged: each rank's loss is already weighted by the
    global minibatch's totals (gloo has no pre-scaled sum, hence force-sum). The model moves to the
    mesh's device block by block, so a model loaded on the CPU never stands whole on one GPU."""
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
    mp = MixedPrecisionPolicy(
        param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype else None
    kwargs = {"mesh": mesh, **({"mp_policy": mp} if mp else {})}
    for block in blocks(model):
        fully_shard(block, **kwargs)
    # FSDP2 keeps a root's weights gathered after its forward, for the backward that follows; a
    # frozen model (the reference, a reward model) has none, and would keep them whole for the rest
    # of the run.
    frozen = not any(p.requires_grad for p in model.parameters())
    fully_shard(model, reshard_after_forward=True if frozen else None, **kwargs)
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)
    return model


def shard_models(models, ranks, device, dtype):
    """Shards the policy, reference and critic (None: not loaded) over every process: they compute
    in DTYPE over float32 shards, as autocast does without sharding (the critic is sharded whole,
    since ValueModel calls its backbone and head itself). Returns the function that shards a reward
    model (stored in DTYPE already) the same way."""
    from functools import partial

    from torch.distributed.device_mesh import init_device_mesh
    mesh = init_device_mesh(device.type, (ranks.world,))
    compute = dtype if dtype != torch.float32 else None
    for model in filter(None, models):
        shard_model(model, mesh, compute)
    return partial(shard_model, mesh=mesh)


def shard_sizes(model):
    """(parameters this process holds, parameters of the whole model)."""
    from torch.distributed.tensor import DTensor
    params = list(model.parameters())
    return (sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in params),
            sum(p.numel() for p in params))


def shard_summary(models):
    """"policy 1,234 of 4,936, ...": the parameters each process holds, by model (name -> model)."""
    return ", ".join(f"{name} {local:,} of {total:,}" for name, model in models.items()
                     for local, total in [shard_sizes(model)])


def whole(x):
    """A sharded tensor (DTensor) gathered whole on every rank (a collective); any other tensor as
    it is."""
    from torch.distributed.tensor import DTensor
    return x.full_tensor() if isinstance(x, DTensor) else x


def full_state_dict(module, keep):
    """module's state dict with every sharded tensor gathered (a collective: every rank calls it),
    moved to the CPU on the rank where keep is true ({} elsewhere), one tensor at a time, so no GPU
    holds a whole model. Tied weights stay one tensor, as save_pretrained expects."""
    out, gathered = {}, {}
    # the parameters themselves: tied ones are one
    for name, x in module.state_dict(keep_vars=True).items():
        if id(x) not in gathered:
            full = whole(x).detach()
            gathered[id(x)] = full.cpu() if keep else None
        if keep:
            out[name] = gathered[id(x)]
    return out


def optimizer_state(model, optimizer):
    """The optimiser's state to save: optimizer.state_dict() for a whole model; for a sharded one
    its moments gathered whole and keyed by parameter name (a collective), on rank 0's CPU."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True,
                                                                               cpu_offload=True))


def load_optimizer_state(model, optimizer, saved):
    """Loads what optimizer_state saved, sharded or not, into this run's optimiser, sharded or not:
    a state keyed by parameter number (written without sharding) is re-keyed by name for a sharded
    model, and one keyed by name goes through torch.distributed.checkpoint's loader, which takes
    each rank's shard."""
    by_name = isinstance(saved["param_groups"][0]["params"][0], str)
    if not by_name and not is_sharded(model):
        return optimizer.load_state_dict(saved)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    if not by_name:
        saved = state_by_name(saved, optimizer, model)
    set_optimizer_state_dict(model, optimizer, saved,
                             options=StateDictOptions(full_state_dict=True))


def state_by_name(saved, optimizer, model):
    """An optimizer.state_dict() (parameters numbered in the order of the optimiser's groups)
    re-keyed by the parameters' names in model, whose optimiser has the same groups in the same
    order (make_optimizer's)."""
    names = {p: n for n, p in model.named_parameters()}
    order = [names[p] for group in optimizer.param_groups for p in group["params"]]
    groups = [{**g, "params": [order[i] for i in g["params"]]} for g in saved["param_groups"]]
    return {"state": {order[i]: s for i, s in saved["state"].items()}, "param_groups": groups}



def minibatch_plan(lengths, my_lengths, epochs, size, micro_size, token_budget, prompt_width,
                   ranks, sharded):
    """The update's minibatches: `epochs` shuffles of the whole batch (every rank draws the same),
    each split into minibatches of `size` sequences, as a list of (this rank's micro-batches of the
    minibatch (micro_batches: indices into its own rows), the minibatch's valid tokens, its
    sequences, the stand-in micro-batches this rank runs). lengths (B,): the whole batch's response
    lengths; my_lengths: this rank's, on the host. Sharded, every forward and backward is a
    collective, so every rank runs the same number of micro-batches: one that holds fewer rows of a
    minibatch runs stand-ins (its first row at loss weight 0, which adds exact zeros)."""
    B, my_rows = len(lengths), ranks.my_rows(len(lengths))
    all_lengths = lengths.long().cpu() if sharded and token_budget else None
    plan = []
    for _ in range(epochs):
        for mb in torch.randperm(B).split(size):
            mine = rank_minibatch(mb, my_rows) if ranks.active else mb
            micros = micro_batches(mine, my_lengths[mine], prompt_width, micro_size,
                                   token_budget) if len(mine) else []
            most = micro_batch_count(mb, B, ranks.world, micro_size, all_lengths, prompt_width,
                                     token_budget) if sharded else len(micros)
            plan.append((micros, lengths[mb].sum(), len(mb), most - len(micros)))
    return plan


def check_same_weights(ranks, models, log):
    """Without sharding every rank must end with the same weights (they took the same summed steps):
    a difference stops the run rather than save one. models: the trained ones (None: not loaded)."""
    prints = ranks.all_objects([weights_fingerprint(m).tolist() for m in models if m is not None])
    if any(p != prints[0] for p in prints):
        raise RuntimeError(f"the processes ended with different weights (fingerprints {prints}): "
                           "a bug, please report it with your settings")
    log(f"weights identical on all {ranks.world} processes")


def my_share(ranks, Tp, **tensors):
    """The update's share of the batch: this rank's rows of the gathered (B, Tr) tensors, cut back
    to its own responses' width, the lengths on the host (no sync in the loop), its ids whole."""
    rows = ranks.my_rows(len(tensors["mask"]))
    Tr = tensors["input_ids"].shape[1] - Tp
    share = {k: v[rows, :Tr] for k, v in tensors.items() if v is not None and v.dim() == 2 and
             k not in ("input_ids", "attention_mask")}
    return {**share, "input_ids": tensors["input_ids"],
            "attention_mask": tensors["attention_mask"],
            "lengths": tensors["lengths"][rows].long().cpu()}
