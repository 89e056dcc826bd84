"""Benchmarks, apart from the trainer: each is a script run from the repository's root.

    speed.py       step time and memory against the machine's limits, at tiny and real shapes,
                   and beside TRL
    compare.py     the algorithms side by side on the default task (docs/compare.png)
    family.py      a family of random tasks that decided the defaults
    arithmetic.py  PPO and GRPO on the arithmetic task over seeds (docs/arithmetic.png)
    trl_runner.py  TRL's trainers on the same tasks, in TRL's own virtualenv
"""
