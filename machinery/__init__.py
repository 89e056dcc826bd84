"""What ppo.py uses but is not the algorithm, one file per concern: models.py (devices, loading models and
tokenizers, LoRA, the value and reward models and the scorer), sampling.py (the sampler, prompts as tokens, the
prompt stream and rollouts, evaluation's sampling), run.py (signals, atomic files, the logs' lines)."""
