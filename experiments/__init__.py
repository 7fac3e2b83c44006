"""Experiment suite: the shared runner, tasks, method registry, records and tables."""
