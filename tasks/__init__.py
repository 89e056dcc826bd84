"""The embedded demo tasks, built offline on first use, and verifiable rewards.

    sentiment.py   the default task: a tiny Qwen3 learns to write positive text (REWARD_MODEL
                   "tasks.sentiment:sentiment_reward")
    arithmetic.py  two-digit addition with an `answer` column (configs/arithmetic_*.py)
    rewards.py     reward functions that check a response against a dataset column
                   ("tasks.rewards:exact_match", "tasks.rewards:gsm8k_answer")
"""
