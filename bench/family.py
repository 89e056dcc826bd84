"""A family of random tasks that nobody tuned for: the benchmark that decides the defaults.

    # make every task's models and prompts (seconds each)
    python bench/family.py build
    # ours vs TRL 1.0.0's PPOTrainer on each task, 3 seeds
    python bench/family.py run --trl100=VENV/bin/python

Each task is made from a seed, nothing downloaded, everything saved with save_pretrained so both
trainers load it the way a user's checkpoint loads:
  * a word-level tokenizer over WORDS made-up words, with <pad> and <eos> distinct (TRL's PPOTrainer
    masks every pad-valued token, so with pad == EOS it would never train the EOS token);
  * a randomly initialised tiny Qwen3 policy (it samples nearly uniformly, so almost every response
    reaches the length limit, as on the task the issue reports);
  * a randomly initialised Qwen3 sequence classifier sharing that tokenizer: the reward model and
    both trainers' critic initialisation. Its head is scaled so that scores of random text have
    standard deviation `spread`. Ours and evaluate.py read (prompt, response) text, the response cut
    at EOS and the EOS token dropped; TRL's PPOTrainer reads the token ids with the EOS token kept,
    and a random classifier scores a trailing <eos> as anything (task.json: eos_changes_score_rms).
    So that both trainers optimise the reward the evaluation measures, bench/trl_runner.py has TRL's
    reward model read a response that ended without its EOS token;
  * TRAIN_PROMPTS training prompts and EVAL_PROMPTS held-out prompts of 4-12 random words.

The evaluation is evaluate.py's: EVAL_SAMPLES responses per held-out prompt (2,048 in all) at
temperature 1, scored by the task's reward model, for the initial policy and every trained one in
one process.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)  # run as python bench/family.py
from machinery import script  # noqa: E402
from machinery.settings import merge_settings  # noqa: E402
CACHE = os.path.join(HERE, ".cache", "family")
WORDS, TRAIN_PROMPTS, EVAL_PROMPTS, EVAL_SAMPLES = 300, 512, 256, 8

# name -> how it is made (seed; policy and classifier width and depth; the score spread) and the
# learning rate both trainers use on it. "aside" is built like the task the issue reports; the
# others vary one thing or more.
TASKS = {
    "aside": dict(seed=1, hidden=128, layers=2, spread=1.0, lr=1e-3),
    "narrow": dict(seed=2, hidden=64, layers=2, spread=0.3, lr=1e-3),
    "wide": dict(seed=3, hidden=256, layers=2, spread=1.0, lr=3e-4),
    "deep": dict(seed=4, hidden=128, layers=4, spread=3.0, lr=3e-4),
}
# The run every trainer gets on every task (the issue's): 60 steps of 16 responses, 24 new tokens;
# PPO samples one response for each of 16 prompts, the critic-free algorithms GROUP_SIZE responses
# for each of 4.
STEPS, PROMPTS_PER_STEP, NEW_TOKENS = 60, 16, 24
GROUP_SIZE, GRPO_PROMPTS_PER_STEP = 4, 4


def task_dir(name):
    return os.path.join(CACHE, name)


def made_up_words(rng, n):
    """n distinct pronounceable nonsense words (consonant-vowel syllables)."""
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou")
                          for _ in range(rng.randint(1, 3))))
    return sorted(words)


def build_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def qwen3_config(tok, hidden, layers, **extra):
    from transformers import Qwen3Config
    return Qwen3Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=3 * hidden,
                       num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
                       max_position_embeddings=128,
                       tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id, bos_token_id=None, **extra)


def random_text(rng, words, lo, hi):
    return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))


def scores(model, tok, texts):
    batch = tok(texts, padding=True, return_tensors="pt")
    return model(**batch).logits[:, 0]


def build_reward_model(tok, words, hidden, layers, spread, rng):
    """A random Qwen3 classifier, its head scaled so that scores of random text have standard
    deviation spread."""
    from transformers import Qwen3ForSequenceClassification
    model = Qwen3ForSequenceClassification(qwen3_config(tok, hidden, layers, num_labels=1)).eval()
    probe = [random_text(rng, words, 6, 36) for _ in range(512)]
    with torch.no_grad():
        model.score.weight.mul_(spread / scores(model, tok, probe).std())
        ended = scores(model, tok, [t + " <eos>" for t in probe])
        plain = scores(model, tok, probe)
    eos_rms = (plain - ended).pow(2).mean().sqrt().item()
    return model, {"score_std": plain.std().item(), "eos_changes_score_rms": eos_rms}


def build(name):
    """Makes the task's policy/, reward/, prompts.jsonl and eval_prompts.jsonl (cached; atomic)."""
    from transformers import Qwen3ForCausalLM
    out = task_dir(name)
    if os.path.exists(os.path.join(out, "task.json")):
        return out
    spec = TASKS[name]
    t0 = time.time()
    rng = random.Random(spec["seed"])
    torch.manual_seed(spec["seed"])
    words = made_up_words(rng, WORDS)
    tok = build_tokenizer(words)
    tmp = out + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    policy = Qwen3ForCausalLM(qwen3_config(tok, spec["hidden"], spec["layers"]))
    policy.save_pretrained(os.path.join(tmp, "policy"))
    tok.save_pretrained(os.path.join(tmp, "policy"))
    reward, info = build_reward_model(tok, words, spec["hidden"], spec["layers"], spec["spread"],
                                      rng)
    reward.save_pretrained(os.path.join(tmp, "reward"))
    tok.save_pretrained(os.path.join(tmp, "reward"))
    for file, n in (("prompts.jsonl", TRAIN_PROMPTS), ("eval_prompts.jsonl", EVAL_PROMPTS)):
        with open(os.path.join(tmp, file), "w") as f:
            f.writelines(json.dumps({"prompt": random_text(rng, words, 4, 12)}) + "\n"
                         for _ in range(n))
    info.update(spec, seconds=round(time.time() - t0, 1))
    with open(os.path.join(tmp, "task.json"), "w") as f:
        json.dump(info, f, indent=1)
    os.replace(tmp, out)
    print(f"built {out}: {info}", flush=True)
    return out


# ---- the runs ------------------------------------------------------------------------------------
# An arm is one trainer with one group of settings: (trainer, algorithm, extra ppo.py settings).
# Ours gets only what the task fixes plus TRL's learning rate (the task's), schedule (constant) and
# temperature (PPO 0.7, the others 1.0); everything else is at our defaults, which is what the arms
# vary.
# the clipping defaults once were; grpo/dapo now take one pass; they once took four
CLIP_1 = ["--MAX_GRAD_NORM=1.0", "--CRITIC_MAX_GRAD_NORM=1.0", "--ADAM_EPSILON=1e-5"]
ONE_PASS = ["--PPO_EPOCHS=1", f"--MINI_BATCH_SIZE={GROUP_SIZE * GRPO_PROMPTS_PER_STEP}"]
FOUR_PASSES = ["--PPO_EPOCHS=4", "--MINI_BATCH_SIZE=8"]
ARMS = {
    "trl-ppo": ("trl100", "ppo", []),
    "ours-ppo": ("ours", "ppo", CLIP_1),
    "ours-ppo-noclip": ("ours", "ppo", ["--MAX_GRAD_NORM=None", "--CRITIC_MAX_GRAD_NORM=None"]),
    "ours-ppo-critic-noclip": ("ours", "ppo", ["--CRITIC_MAX_GRAD_NORM=None"]),
    "ours-ppo-eps8": ("ours", "ppo", [*CLIP_1, "--ADAM_EPSILON=1e-8"]),
    "ours-ppo-1mb": ("ours", "ppo", [*CLIP_1, f"--MINI_BATCH_SIZE={PROMPTS_PER_STEP}"]),
    "ours-ppo-linear": ("ours", "ppo", [*CLIP_1, "--LR_SCHEDULE=linear"]),
    "ours-ppo-noclip-1mb": ("ours", "ppo", ["--MAX_GRAD_NORM=None", "--CRITIC_MAX_GRAD_NORM=None",
                                            f"--MINI_BATCH_SIZE={PROMPTS_PER_STEP}"]),
    "ours-ppo-critic-noclip-clr": ("ours", "ppo",
                                   ["--MAX_GRAD_NORM=1.0", "--CRITIC_MAX_GRAD_NORM=None",
                                                   "--CRITIC_LEARNING_RATE=None"]),
    "ours-ppo-trl-matched": ("ours", "ppo", ["--MAX_GRAD_NORM=None", "--CRITIC_MAX_GRAD_NORM=None",
                                             "--CRITIC_LEARNING_RATE=None",
                                             f"--MINI_BATCH_SIZE={PROMPTS_PER_STEP}",
                                             "--ADAM_EPSILON=1e-8"]),
    "ours-ppo-noclip-clr": ("ours", "ppo", ["--MAX_GRAD_NORM=None", "--CRITIC_MAX_GRAD_NORM=None",
                                            "--CRITIC_LEARNING_RATE=None"]),
    "trl-grpo": ("trl116", "grpo", []),
    "trl-dapo": ("trl116", "dapo", []),
    "trl-rloo": ("trl116", "rloo", []),
    "ours-reinforce": ("ours", "reinforce", []),
    "ours-grpo-e1": ("ours", "grpo", ONE_PASS),
    "ours-grpo-e4mb2": ("ours", "grpo", FOUR_PASSES),
    "ours-grpo-e1-eps8": ("ours", "grpo", [*ONE_PASS, "--ADAM_EPSILON=1e-8"]),
    "ours-dapo-e1": ("ours", "dapo", [*ONE_PASS, f"--OVERLONG_BUFFER={NEW_TOKENS // 5}"]),
    "ours-dapo-e1-noshape": ("ours", "dapo", [*ONE_PASS, "--OVERLONG_BUFFER=0"]),
    "ours-dapo-e4mb2": ("ours", "dapo", [*FOUR_PASSES, f"--OVERLONG_BUFFER={NEW_TOKENS // 5}"]),
}


def ours_command(task, algorithm, seed, out, extra):
    t = task_dir(task)
    per_step = ([f"--BATCH_SIZE={PROMPTS_PER_STEP}", "--GROUP_SIZE=1", "--TEMPERATURE=0.7"]
                if algorithm == "ppo" else
                [f"--BATCH_SIZE={GRPO_PROMPTS_PER_STEP}", f"--GROUP_SIZE={GROUP_SIZE}",
                 "--TEMPERATURE=1.0"])
    return [sys.executable, os.path.join(HERE, "ppo.py"), *merge_settings([
            f"--ALGORITHM={algorithm}", f"--SEED={seed}",
            f"--ACTOR_MODEL={t}/policy", f"--CRITIC_MODEL={t}/reward", f"--REWARD_MODEL={t}/reward",
            f"--DATASET={t}/prompts.jsonl", f"--MAX_NEW_TOKENS={NEW_TOKENS}",
            f"--MAX_STEPS={STEPS}",
            f"--LEARNING_RATE={TASKS[task]['lr']}", "--LR_SCHEDULE=constant", *per_step,
            f"--OUTPUT_DIR={out}",
            # the arm's own settings win
            "--OVERWRITE=True", "--PLOT_EVERY=100000", "--SAVE_EVERY=100000"], extra)]


def run_one(task, arm, seed, pythons, threads):
    """One training run, unless its result is already there; returns its record."""
    out = os.path.join(RUNS, task, f"{arm}-seed{seed}")
    done = os.path.join(out, "run.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    trainer, algorithm, extra = ARMS[arm]
    if trainer == "ours":
        cmd = ours_command(task, algorithm, seed, out, extra)
    else:
        cmd = [pythons[trainer], os.path.join(HERE, "bench", "trl_runner.py"), "family", algorithm,
               out, str(seed),
               task_dir(task), str(TASKS[task]["lr"])]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.time()
    result = subprocess.run(cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:  # reported, and the other runs go on
        print(f"{task} {arm} seed {seed} failed:\n{result.stderr[-3000:]}", flush=True)
        return None
    record = {"task": task, "arm": arm, "seed": seed, "wall": time.time() - t0, "threads": threads}
    with open(done, "w") as f:
        json.dump(record, f)
    print(f"{task:8s} {arm:22s} seed {seed}: {record['wall']:.0f} s", flush=True)
    return record


def evaluate(task, arms, seeds):
    """evaluate.py on the initial policy and every finished run of the task (one process, through
    bench/compare.py's evaluate_all; a later --DATASET overrides the one it passes); cached per
    policy."""
    cache_path = os.path.join(RUNS, task, "eval.json")
    cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}
    runs = [f"{arm}-seed{seed}" for arm in arms for seed in seeds
            if os.path.exists(os.path.join(RUNS, task, f"{arm}-seed{seed}", "run.json"))]
    todo = [r for r in runs if r not in cache]
    if todo or "initial" not in cache:
        # here, not at the top: bench/trl_runner.py imports this file in TRL's virtualenv
        from bench import compare
        t = task_dir(task)
        scores = compare.evaluate_all([f"{t}/policy",
                                       *[os.path.join(RUNS, task, r, "policy") for r in todo]],
                                      [f"--REWARD_MODEL={t}/reward",
                                       f"--DATASET={t}/eval_prompts.jsonl",
                                       f"--MAX_NEW_TOKENS={NEW_TOKENS}", "--TEMPERATURE=1.0",
                                       f"--EVAL_SAMPLES={EVAL_SAMPLES}"])
        cache["initial"] = scores[0]
        for r, e in zip(todo, scores[1:]):
            cache[r] = e
        with open(cache_path, "w") as f:
            json.dump(cache, f, indent=1)
    return cache


RUNS = os.path.join(HERE, "runs", "family")


def mean_se(values):
    m = sum(values) / len(values)
    se = (
        sum((v - m) ** 2 for v in values) / (
            len(values) - 1) / len(values)) ** 0.5 if len(values) > 1 else 0.0
    return m, se


def report(tasks, arms, seeds):
    """The family's table: held-out gain per task and seed, mean +- standard error, whole-process
    seconds; and the family's mean of gain / the task's score spread (so that tasks with wider
    rewards do not dominate)."""
    lines = [
        "| task | arm | gain per seed | mean gain +- s.e. | response length | seconds per run |",
        "|---|---|---|---|---|---|"]
    normalised = {arm: [] for arm in arms}
    for task in tasks:
        evals = evaluate(task, arms, seeds)
        for arm in arms:
            keys = [f"{arm}-seed{s}" for s in seeds if f"{arm}-seed{s}" in evals]
            if not keys:
                continue
            gains = [evals[k]["gain"] for k in keys]
            walls = [json.load(open(os.path.join(RUNS, task, k, "run.json")))["wall"] for k in keys]
            normalised[arm] += [g / TASKS[task]["spread"] for g in gains]
            m, se = mean_se(gains)
            length = sum(evals[k].get("length", float("nan")) for k in keys) / len(keys)
            lines.append(
                f"| {task} | {arm} | {', '.join(f'{g:+.3f}' for g in gains)} | {m:+.3f} +- "
                f"{se:.3f} | {length:.1f} | {sum(walls) / len(walls):.0f} |")
    lines += [
        "", "Inside our runs (mean over tasks and seeds): gradient norms before clipping over the "
        "first 10 steps, the critic's explained variance over the last 20, KL to the reference "
        "(nats per response) and the policy's clip fraction over the last 10:", "",
        "| arm | grad_norm | critic_grad_norm | explained_variance | kl | clipfrac |",
        "|---|---|---|---|---|---|"]
    # here, not at the top: bench/trl_runner.py imports this file in TRL's virtualenv
    import plotting
    for arm in arms:
        rows = [plotting.read_metrics(path) for task in tasks for s in seeds
                if os.path.exists(path := os.path.join(RUNS, task, f"{arm}-seed{s}",
                                                       "metrics.jsonl"))]
        if not rows or ARMS[arm][0] != "ours":
            continue

        def avg(key, part):
            values = [r[key] for run in rows for r in part(run) if key in r]
            return f"{sum(values) / len(values):.2f}" if values else "-"
        lines.append(
            f"| {arm} | {avg('grad_norm', lambda r: r[:10])} | "
            f"{avg('critic_grad_norm', lambda r: r[:10])} | "
            f"{avg('explained_variance', lambda r: r[-20:])} | {avg('kl', lambda r: r[-10:])} | "
            f"{avg('clipfrac', lambda r: r[-10:])} |")
    lines += ["", "| arm | runs | family mean of gain / spread +- s.e. |", "|---|---|---|"]
    for arm, values in normalised.items():
        if values:
            m, se = mean_se(values)
            lines.append(f"| {arm} | {len(values)} | {m:+.3f} +- {se:.3f} |")
    md = "\n".join(lines) + "\n"
    os.makedirs(RUNS, exist_ok=True)
    with open(os.path.join(RUNS, "report.md"), "w") as f:
        f.write(md)
    print(md)


def main(argv=None):
    parser = script.ArgumentParser(prog="bench/family.py", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "run", "report"])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--arms", default="trl-ppo,ours-ppo")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs side by side, each with cores/jobs threads")
    parser.add_argument("--trl100", help="Python of a virtualenv with trl==1.0.0 (PPO)")
    parser.add_argument("--trl116",
                        help="Python of a virtualenv with trl==1.16.0 (GRPO, DAPO loss, RLOO)")
    args = parser.parse_args(argv)
    tasks, arms = args.tasks.split(","), args.arms.split(",")
    for given, known, what in ((tasks, TASKS, "--tasks"), (arms, ARMS, "--arms")):
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"{what}: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds={args.seeds}: give integers separated by commas, e.g. 0,1,2")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    needed = {ARMS[a][0] for a in arms} - {"ours"}
    missing = [f"--{p}" for p in sorted(needed) if args.command == "run" and not getattr(args, p)]
    if missing:
        parser.error(f"--arms={args.arms} runs TRL: give {' and '.join(missing)}=PYTHON "
                     "(a virtualenv's python with that TRL)")
    for task in tasks:
        build(task)
    if args.command == "build":
        return
    if args.command == "run":
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        pythons = {"trl100": args.trl100, "trl116": args.trl116}
        work = [(task, arm, seed) for task in tasks for seed in seeds for arm in arms]
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda w: run_one(*w, pythons, threads), work))
    report(tasks, arms, seeds)


if __name__ == "__main__":
    sys.exit(script.run(main))
