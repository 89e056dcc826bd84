"""Reward functions for the tests, given to ppo.py as REWARD_MODEL=reward_fns:NAME."""
import math
import os
import signal

from tasks import sentiment as sentiment_task


def word_count(prompts, responses):
    return [float(len(r.split())) for r in responses]


def nan_after_probe(prompts, responses):
    """Fine on ppo.py's start-up probe (one " a test response."), NaN on real responses."""
    return [0.0 if r == " a test response." else math.nan for r in responses]


def raises(prompts, responses):
    raise KeyError("no such sentiment")


def wrong_count(prompts, responses):
    return [1.0]


sentiment = sentiment_task.sentiment_reward


def uniform_for_movies(prompts, responses):
    """The same reward for every response to a prompt about a movie (so its group carries no
    signal), the word count otherwise."""
    return [1.0 if "movie" in p else float(len(r.split())) for p, r in zip(prompts, responses)]


def constant(prompts, responses):
    """The same reward for everything: every group is uniform."""
    return [0.5 for _ in responses]


_calls = {"n": 0}


def reset_faults():
    _calls["n"] = 0


def sentiment_with_faults(prompts, responses):
    """tasks/sentiment.py's reward; at the N-th call, PPO_TEST_KILL_AT=N SIGKILLs this process and
    PPO_TEST_RAISE_AT=N raises, as a dying reward server would."""
    _calls["n"] += 1
    if os.environ.get("PPO_TEST_KILL_AT") == str(_calls["n"]):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("PPO_TEST_RAISE_AT") == str(_calls["n"]):
        raise ConnectionError("reward server went away")
    return sentiment_task.sentiment_reward(prompts, responses)


def exits_after_probe(prompts, responses):
    """Fine on the start-up probe, then calls sys.exit(0) as a careless script might: a fault, not a
    clean end."""
    if responses[0] != " a test response.":
        raise SystemExit(0)
    return [0.0 for _ in responses]


def interrupts_after_probe(prompts, responses):
    """Fine on the start-up probe, then raises KeyboardInterrupt from inside the function."""
    if responses[0] != " a test response.":
        raise KeyboardInterrupt
    return [0.0 for _ in responses]


def exits(prompts, responses):
    raise SystemExit(3)


def slow(prompts, responses):
    """The word count, slowly (one second a batch after the probe): time to send a process two
    signals."""
    import time
    if responses[0] != " a test response.":
        time.sleep(1.0)
    return word_count(prompts, responses)


def grad_tensor(prompts, responses):
    """Scores computed in a graph and returned without detach()."""
    import torch
    return torch.ones(len(responses), requires_grad=True) * 0.5


def bf16_tensor(prompts, responses):
    """The word count as a bfloat16 tensor, as a judge model run in bfloat16 returns it."""
    import torch
    return torch.tensor([float(len(r.split())) for r in responses], dtype=torch.bfloat16)


def changes_directory(prompts, responses):
    """The word count, after moving the process's working directory (to read files of its own,
    say)."""
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    return word_count(prompts, responses)


def mutates_inputs(prompts, responses):
    """The word count, then it rewrites the lists it was given in place."""
    scores = word_count(prompts, responses)
    for i in range(len(responses)):
        responses[i] = "MUTATED"
        prompts[i] = "MUTATED"
    return scores


def returns_text(prompts, responses):
    return "good"


def sentiment_on_training_prompts_only(prompts, responses, held_out, **_):
    """The sentiment reward on training prompts and its negative on held-out ones (column
    held_out): what raises the training reward lowers the held-out one, as a trick that only pays
    on the training data would."""
    return [-s if h else s for s, h in zip(sentiment(prompts, responses), held_out)]


def answer_only(prompts, responses, answer):
    """1.0 where the response is the answer column's text: a reward that reads one column by
    name."""
    return [float(r.strip() == str(a).strip()) for r, a in zip(responses, answer)]
