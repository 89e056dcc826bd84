"""What ppo.py uses but is not the algorithm, one module per subject, each a set of plain functions
and small classes that take what they need and import only the modules below them (docs/design.md):

    script.py       how every script ends: one line and an exit code (Refusal)
    distributed.py  torchrun's processes (Ranks), exact gradient sums, FSDP2 sharding
    models.py       model folders and hub ids checked; devices, dtypes, loading, LoRA, the critic
    data.py         the prompts and their columns: loaded, checked, through the chat template
    rewards.py      reward models and functions: checked, loaded, called (Scorer)
    sampling.py     the sampler, the prompt stream, evaluation's sampling
    run_files.py    OUTPUT_DIR: its checks and lock, atomic writes, signals
    checkpoints.py  save, restore and check a checkpoint; the final folders
    settings.py     config.py's kinds, config files, --NAME=value, --help, checks among settings
    health.py       the health alarms over logged rows
    logs.py         a run's logs: rows, samples, health checks, progress bar, tracker, charts
    exits.py        how a run starts and ends: start-up's refusals, the loop's stops, exit codes
"""
