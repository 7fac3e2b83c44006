"""Command-line tools around the runner: download plans, the hub catalogue, parameter counts, fault injection, module counts and the generation bench."""
