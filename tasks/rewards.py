"""Verifiable rewards: functions of (prompts, responses, **columns) that check each response against
a column of the dataset, named as a parameter (ppo.py passes every column a reward function names,
or all with **kwargs).

    # 1 when the response, stripped, is the `answer` column's text
    REWARD_MODEL = "tasks.rewards:exact_match"
    # 1 when the response's last number is gsm8k's answer (after ####)
    REWARD_MODEL = "tasks.rewards:gsm8k_answer"

This file exists so that a verifiable reward is one line of a config (configs/arithmetic_grpo.py,
configs/gsm8k_grpo.py) rather than code each user writes again.
"""
import re

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def exact_match(prompts, responses, answer, **_):
    """1.0 where the response, without surrounding whitespace, equals the answer's text; else
    0.0."""
    return [float(r.strip() == str(a).strip()) for r, a in zip(responses, answer)]


def last_number(text):
    """The last number written in text (thousands commas dropped), or None."""
    found = NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def same_number(a, b):
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def gsm8k_answer(prompts, responses, answer, **_):
    """1.0 where the last number in the response equals the reference's final answer (gsm8k writes
    the worked solution, then "#### 42"); else 0.0. As in the GSM8K paper's and TRL's examples, only
    the final number counts."""
    golds = [str(a).split("####")[-1].strip().replace(",", "") for a in answer]
    return [float(p is not None and same_number(p, g)) for p,
            g in zip(map(last_number, responses), golds)]
