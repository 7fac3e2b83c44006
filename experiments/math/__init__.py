"""Math reasoning support: answer scoring (`scoring`), data and prompts (`data`), greedy generation (`generation`)
and end-to-end evaluation (`evaluation`). The runner's task plug-in is `experiments/tasks/math.py`."""
