"""TRL's GRPOTrainer (loss_type "grpo" or "dapo") or RLOOTrainer on the embedded default task, with the settings of
our matching run. Runs in its own virtualenv (TRL pins its own versions); compare.py --trl=PYTHON drives it.

    VENV/bin/python bench/trl_runner.py grpo OUTPUT_DIR [SEED]      # also: dapo, rloo
"""
import json
import os
import sys
import time

t0 = time.time()
import datasets  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
import default_task  # noqa: E402

# Our settings in TRL's terms (compare.py TRL_MATCHED_ARGS): 8 prompts x 4 responses per step, 16 new tokens,
# temperature 1, no top-k/top-p, learning rate 3e-4 decaying linearly, Adam eps 1e-5, grad clip 1.0, 100 steps,
# one optimizer step per generation on all 32 responses (TRL's defaults num_iterations=1, steps_per_generation=1).
STEPS, GROUP, PROMPTS_PER_STEP = 100, 4, 8


def reward(prompts, completions, **kwargs):
    return default_task.sentiment_reward(prompts, completions)


def main(algorithm, out_dir, seed):
    common = dict(output_dir=out_dir, num_generations=GROUP, max_completion_length=16, temperature=1.0,
                  learning_rate=3e-4, lr_scheduler_type="linear", adam_epsilon=1e-5, max_grad_norm=1.0, seed=seed,
                  use_cpu=True, bf16=False, save_strategy="no", report_to="none", logging_steps=10,
                  disable_dropout=True, epsilon=0.2, gradient_checkpointing=False,  # ours does not checkpoint
                  per_device_train_batch_size=GROUP * PROMPTS_PER_STEP, steps_per_generation=1, num_iterations=1,
                  max_steps=STEPS)
    if algorithm in ("grpo", "dapo"):
        args = GRPOConfig(**common, loss_type=algorithm, beta=0.04 if algorithm == "grpo" else 0.0,
                          epsilon_high=0.28 if algorithm == "dapo" else None, scale_rewards="group")
        trainer_class = GRPOTrainer
    else:
        args = RLOOConfig(**common, beta=0.05)
        trainer_class = RLOOTrainer
    policy = default_task.POLICY_DIR
    model = AutoModelForCausalLM.from_pretrained(policy)
    tok = AutoTokenizer.from_pretrained(policy)
    ds = datasets.load_dataset("json", data_files=default_task.PROMPTS_FILE, split="train")
    trainer = trainer_class(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    trainer.save_model(os.path.join(out_dir, "policy"))
    tok.save_pretrained(os.path.join(out_dir, "policy"))
    with open(os.path.join(out_dir, "trl_log.json"), "w") as f:
        json.dump({"log_history": trainer.state.log_history, "seconds": time.time() - t0}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
