"""Equal-budget tuning with Optuna's TPE as a Hydra Sweeper plugin (beside the paper's OFAT)."""
