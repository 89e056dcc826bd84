"""What ppo.py uses but is not the algorithm, one file per concern:

    preflight.py    every check before any weight loads: the settings and their kinds, folders and
                    hub ids, the dataset, reward functions, the output folder and its lock
    setup.py        loading the prompts and the models (PPOTrainer.load_data, load_models)
    models.py       devices, models and tokenizers, LoRA, the value and reward models, the scorer
    sampling.py     the sampler, prompts as tokens, the prompt stream, evaluation's sampling
    loop.py         the run: start-up, train(), logs, plots, the guard's bookkeeping, exit codes
    checkpoint.py   checkpoints and the final folders, saved atomically and restored exactly
    distributed.py  torchrun's processes (Ranks) and FSDP2 sharding
    run.py          signals, clocks, atomic files, the logs' lines, OUTPUT_DIR's lock
"""
