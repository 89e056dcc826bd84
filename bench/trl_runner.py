"""TRL's GRPOTrainer (loss_type "grpo" or "dapo"), RLOOTrainer or PPOTrainer on the embedded default
task, with the settings of our matching run. Runs in its own virtualenv (TRL pins its own versions);
bench/compare.py --trl=PYTHON drives grpo, dapo and rloo (trl==1.16.0), bench/speed.py --trl=PYTHON
drives ppo (trl==1.0.0, the last release with trl.experimental.ppo).

    VENV/bin/python bench/trl_runner.py grpo OUTPUT_DIR [SEED]      # also: dapo, rloo
    VENV/bin/python bench/trl_runner.py ppo OUTPUT_DIR SEED STEPS POLICY_DIR REWARD_DIR
        [PROMPTS BATCH RESPONSE_LEN EPOCHS LEARNING_RATE]      # bench/speed.py --shapes --trl
    # bench/family.py
    VENV/bin/python bench/trl_runner.py family ALGORITHM OUTPUT_DIR SEED TASK_DIR LEARNING_RATE
    # bench/real_model.py (trl==1.16.0 beside this project's requirements works too)
    python bench/trl_runner.py addition OUTPUT_DIR SEED LEARNING_RATE [STEPS]
"""
import json
import os
import sys
import time

t0 = time.time()
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
from machinery import script  # noqa: E402

USAGE = ("usage: VENV/bin/python bench/trl_runner.py grpo|dapo|rloo OUTPUT_DIR [SEED], or ppo, "
         "family or addition with the arguments its docstring lists")
if __name__ == "__main__":  # one line, before the slow imports, for what cannot run at all
    try:
        import trl  # noqa: F401
    except ImportError:
        print("error: bench/trl_runner.py runs in a virtualenv with TRL (pip install trl==1.16.0; "
              "trl==1.0.0 for ppo): run it with that virtualenv's python", file=sys.stderr)
        sys.exit(2)
    if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
        print(f"error: {USAGE}", file=sys.stderr)
        sys.exit(2)
import datasets  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer  # noqa: E402

from tasks import sentiment  # noqa: E402

# Our settings in TRL's terms (bench/compare.py TRL_MATCHED_ARGS): 8 prompts x 4 responses per step,
# 16 new tokens, temperature 1, no top-k/top-p, learning rate 3e-4 decaying linearly, Adam eps 1e-5,
# grad clip 1.0, 100 steps, one optimizer step per generation on all 32 responses (TRL's defaults
# num_iterations=1, steps_per_generation=1).
STEPS, GROUP, PROMPTS_PER_STEP = 100, 4, 8


def reward(prompts, completions, **kwargs):
    return sentiment.sentiment_reward(prompts, completions)


def main(algorithm, out_dir, seed):
    common = dict(output_dir=out_dir, num_generations=GROUP, max_completion_length=16,
                  temperature=1.0,
                  learning_rate=3e-4, lr_scheduler_type="linear", adam_epsilon=1e-5,
                  max_grad_norm=1.0, seed=seed,
                  use_cpu=True, bf16=False, save_strategy="no", report_to="none", logging_steps=10,
                  # ours does not checkpoint
                  disable_dropout=True, epsilon=0.2, gradient_checkpointing=False,
                  per_device_train_batch_size=GROUP * PROMPTS_PER_STEP, steps_per_generation=1,
                  num_iterations=1, max_steps=STEPS)
    if algorithm in ("grpo", "dapo"):
        args = GRPOConfig(**common, loss_type=algorithm, beta=0.04 if algorithm == "grpo" else 0.0,
                          epsilon_high=0.28 if algorithm == "dapo" else None, scale_rewards="group")
        trainer_class = GRPOTrainer
    else:
        args = RLOOConfig(**common, beta=0.05)
        trainer_class = RLOOTrainer
    policy = sentiment.POLICY_DIR
    model = AutoModelForCausalLM.from_pretrained(policy)
    tok = AutoTokenizer.from_pretrained(policy)
    ds = datasets.load_dataset("json", data_files=sentiment.PROMPTS_FILE, split="train")
    trainer = trainer_class(model=model, reward_funcs=reward, args=args, train_dataset=ds,
                            processing_class=tok)
    trainer.train()
    trainer.save_model(os.path.join(out_dir, "policy"))
    tok.save_pretrained(os.path.join(out_dir, "policy"))
    with open(os.path.join(out_dir, "trl_log.json"), "w") as f:
        json.dump({"log_history": trainer.state.log_history, "seconds": time.time() - t0}, f)


def main_ppo(out_dir, seed, steps, policy, reward, prompts=None, batch=32, response_len=16,
             epochs=4, learning_rate=3e-4):
    """TRL's PPOTrainer with bench/speed.py's TRL_PPO_ARGS in its terms: 32 prompts per step, 4
    epochs x 4 minibatches of 8 (per_device_train_batch_size=32 with no accumulation makes each
    minibatch one optimizer step, as ours), 16 new tokens stopping at EOS, learning rate 3e-4
    decaying linearly for policy and value (one optimizer in TRL; Adam is invariant to its vf_coef),
    Adam eps 1e-5, weight decay 0.01 (torch AdamW's default, which ours uses on every weight; HF's
    Trainer exempts biases and norm weights), k1 KL with beta 0.05, clip 0.2, value clip 0.2, gamma
    1, lambda 0.95. TRL's PPO loop never clips gradients. bench/speed.py --shapes --trl changes the
    prompts, the batch (minibatches of 8), the response length, the epochs and the learning rate; on
    a GPU both run in bf16 mixed precision (TRL: bf16=True; ours: DTYPE=auto)."""
    from transformers import AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tok = AutoTokenizer.from_pretrained(policy, padding_side="left")
    ds = datasets.load_dataset("json", data_files=prompts or sentiment.PROMPTS_FILE, split="train")
    ds = ds.map(lambda row: {"input_ids": tok(row["prompt"])["input_ids"][-128:]},
                remove_columns=ds.column_names)
    on_gpu = torch.cuda.is_available()
    args = PPOConfig(output_dir=out_dir, per_device_train_batch_size=batch,
                     gradient_accumulation_steps=1,
                     num_mini_batches=batch // min(batch, 8), num_ppo_epochs=epochs,
                     total_episodes=batch * steps,
                     response_length=response_len, stop_token="eos", temperature=1.0,
                     learning_rate=learning_rate,
                     lr_scheduler_type="linear", adam_epsilon=1e-5, weight_decay=0.01, kl_coef=0.05,
                     kl_estimator="k1", cliprange=0.2, cliprange_value=0.2, gamma=1.0, lam=0.95,
                     seed=seed,
                     use_cpu=not on_gpu, bf16=on_gpu, save_strategy="no", report_to="none",
                     num_sample_generations=0, local_rollout_forward_batch_size=batch,
                     logging_steps=10)
    trainer = PPOTrainer(args=args, processing_class=tok,
                         model=AutoModelForCausalLM.from_pretrained(policy),
                         ref_model=AutoModelForCausalLM.from_pretrained(policy),
                         reward_model=AutoModelForSequenceClassification.from_pretrained(
                             reward, num_labels=1),
                         value_model=AutoModelForSequenceClassification.from_pretrained(
                             reward, num_labels=1),
                         train_dataset=ds, eval_dataset=ds)
    t_train = time.time()
    trainer.train()
    train_seconds = time.time() - t_train
    trainer.save_model(os.path.join(out_dir, "policy"))
    tok.save_pretrained(os.path.join(out_dir, "policy"))
    with open(os.path.join(out_dir, "trl_log.json"), "w") as f:
        json.dump({"log_history": trainer.state.log_history, "seconds": time.time() - t0,
                   "train_seconds": train_seconds, "steps": steps}, f)


def read_reward_without_eos(trainer_module, reward_model, eos_id, pad_id):
    """TRL's PPOTrainer scores token ids with the response's EOS token kept; ours and evaluate.py
    score the text, where a response ends before its EOS token. On bench/family.py's random reward
    models a trailing EOS moves the score by about one standard deviation, so TRL would optimise a
    different reward from the one evaluated. This has the reward model (only it: the value model's
    calls are untouched) read each response with its EOS token turned to padding, so that the score
    is read at the last word, as ours reads it."""
    get_reward = trainer_module.get_reward

    def patched(model, query_responses, pad_token_id, context_length):
        if model is reward_model:
            response = query_responses[:, context_length:]
            query_responses = torch.cat([query_responses[:, :context_length],
                                         response.masked_fill(response == eos_id, pad_id)], 1)
        return get_reward(model, query_responses, pad_token_id, context_length)
    trainer_module.get_reward = patched


def main_family(algorithm, out_dir, seed, task, learning_rate):
    """One run on a bench/family.py task with TRL's defaults, except what the task fixes for every
    trainer (prompts per step, group size, new tokens, steps, responses ending at EOS) and the
    learning rate (constant). ppo: PPOTrainer (trl==1.0.0): 16 prompts per step, 4 epochs of one
    minibatch, temperature 0.7, k1 KL 0.05, vf_coef 0.1, Adam eps 1e-8, no gradient clipping.
    grpo/dapo/rloo (trl==1.16.0): 4 prompts x 4 responses per step, one pass (num_iterations=1),
    temperature 1; grpo: loss_type "grpo", dapo: "dapo" (TRL's default), both beta 0 (TRL's
    default); rloo: beta 0.05 (its default); their max_grad_norm 1.0 is TRL's default."""
    from transformers import AutoModelForSequenceClassification
    from bench import family
    policy, reward_dir = os.path.join(task, "policy"), os.path.join(task, "reward")
    prompts = os.path.join(task, "prompts.jsonl")
    tok = AutoTokenizer.from_pretrained(policy, padding_side="left")
    ds = datasets.load_dataset("json", data_files=prompts, split="train")
    common = dict(output_dir=out_dir, seed=seed, use_cpu=True, bf16=False, save_strategy="no",
                  report_to="none",
                  learning_rate=learning_rate, lr_scheduler_type="constant", logging_steps=10)
    if algorithm == "ppo":
        from trl.experimental.ppo import PPOConfig, PPOTrainer
        from trl.experimental.ppo import ppo_trainer
        ds = ds.map(lambda row: {"input_ids": tok(row["prompt"])["input_ids"]},
                    remove_columns=ds.column_names)
        args = PPOConfig(**common, per_device_train_batch_size=family.PROMPTS_PER_STEP,
                         total_episodes=family.PROMPTS_PER_STEP * family.STEPS,
                         response_length=family.NEW_TOKENS,
                         stop_token="eos", num_sample_generations=0)
        reward_model = AutoModelForSequenceClassification.from_pretrained(reward_dir, num_labels=1)
        read_reward_without_eos(ppo_trainer, reward_model, tok.eos_token_id, tok.pad_token_id)
        trainer = PPOTrainer(args=args, processing_class=tok,
                             model=AutoModelForCausalLM.from_pretrained(policy),
                             ref_model=AutoModelForCausalLM.from_pretrained(policy),
                             reward_model=reward_model,
                             value_model=AutoModelForSequenceClassification.from_pretrained(
                                 reward_dir, num_labels=1),
                             train_dataset=ds, eval_dataset=ds)
    else:
        scorer = AutoModelForSequenceClassification.from_pretrained(reward_dir, num_labels=1).eval()
        scorer_tok = AutoTokenizer.from_pretrained(reward_dir)

        @torch.no_grad()
        # machinery/models.py's RewardModel reading: a (prompt, response) text pair
        def reward(prompts, completions, **kwargs):
            batch = scorer_tok(list(prompts), list(completions), padding=True, return_tensors="pt")
            return scorer(**batch).logits[:, 0].tolist()
        group = family.GROUP_SIZE
        grpo_args = dict(common, num_generations=group, max_completion_length=family.NEW_TOKENS,
                         per_device_train_batch_size=group * family.GRPO_PROMPTS_PER_STEP,
                         max_steps=family.STEPS)
        if algorithm in ("grpo", "dapo"):
            args, trainer_class = GRPOConfig(**grpo_args, loss_type=algorithm), GRPOTrainer
        else:
            args, trainer_class = RLOOConfig(**grpo_args), RLOOTrainer
        trainer = trainer_class(model=AutoModelForCausalLM.from_pretrained(policy),
                                reward_funcs=reward, args=args,
                                train_dataset=ds, processing_class=tok)
    trainer.train()
    trainer.save_model(os.path.join(out_dir, "policy"))
    tok.save_pretrained(os.path.join(out_dir, "policy"))
    with open(os.path.join(out_dir, "trl_log.json"), "w") as f:
        json.dump({"log_history": trainer.state.log_history, "seconds": time.time() - t0}, f)


def main_addition(out_dir, seed, learning_rate, steps=12):
    """GRPOTrainer on configs/smollm2_addition_grpo.py's run in TRL's terms: SmolLM2-135M-Instruct,
    the chat-form problems as conversations (TRL applies the chat template to a list of messages,
    as ours does to a text prompt under CHAT_TEMPLATE="auto"), the same reward function, 4 problems
    x 8 answers per step, 12 new tokens, temperature 1, 12 steps (by default), one optimizer step
    per generation, loss_type "grpo" with beta 0.04 on the k3 KL (our grpo's defaults), clip 0.2,
    rewards scaled by the group's std, learning rate decaying linearly, Adam eps 1e-5, grad clip
    1.0."""
    from tasks import rewards, smollm2
    data = os.path.join(HERE, "data", "addition_chat_train.jsonl")
    ds = datasets.load_dataset("json", data_files=data, split="train")
    ds = ds.map(lambda row: {"prompt": [{"role": "user", "content": row["prompt"]}]})

    def reward(prompts, completions, answer, **kwargs):
        return rewards.gsm8k_answer(prompts, [c[-1]["content"] for c in completions], answer)
    group, prompts_per_step = 8, 4
    args = GRPOConfig(output_dir=out_dir, seed=seed, use_cpu=True, bf16=False,
                      save_strategy="no", report_to="none", logging_steps=1,
                      num_generations=group, max_completion_length=12, temperature=1.0,
                      learning_rate=learning_rate, lr_scheduler_type="linear",
                      adam_epsilon=1e-5, max_grad_norm=1.0, disable_dropout=True,
                      per_device_train_batch_size=group * prompts_per_step,
                      steps_per_generation=1, num_iterations=1, max_steps=steps,
                      loss_type="grpo", beta=0.04, epsilon=0.2, scale_rewards="group")
    tok = AutoTokenizer.from_pretrained(smollm2.POLICY_DIR)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(smollm2.POLICY_DIR),
                          reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    trainer.save_model(os.path.join(out_dir, "policy"))
    tok.save_pretrained(os.path.join(out_dir, "policy"))
    with open(os.path.join(out_dir, "trl_log.json"), "w") as f:
        json.dump({"log_history": trainer.state.log_history, "seconds": time.time() - t0}, f)


def cli(argv):
    """The command line (the docstring's forms); a wrong number or kind of argument is one line."""
    try:
        if argv[0] == "addition":
            run, args = main_addition, [argv[1], int(argv[2]), float(argv[3]),
                                        *map(int, argv[4:5])]
        elif argv[0] == "family":
            run, args = main_family, [argv[1], argv[2], int(argv[3]), argv[4], float(argv[5])]
        elif argv[0] == "ppo":
            shape = [] if len(argv) < 7 else [argv[6], *map(int, argv[7:10]), float(argv[10])]
            run, args = main_ppo, [argv[1], int(argv[2]), int(argv[3]), argv[4], argv[5], *shape]
        elif argv[0] in ("grpo", "dapo", "rloo"):
            run, args = main, [argv[0], argv[1], int(argv[2]) if len(argv) > 2 else 0]
        else:
            raise IndexError
    except (IndexError, ValueError):
        raise script.Refusal(f"{USAGE} (got {' '.join(argv)})") from None
    return run(*args)


if __name__ == "__main__":
    sys.exit(script.run(cli))
