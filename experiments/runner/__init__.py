"""The runner's parts below `experiments.run`: records and resume, the run claim, trackers (wandb), hub and model stores, config checks, distributed set-up, and the end-of-sweep summary."""
