"""Offline training: datasets, training runs, evaluation, model comparison and export.

Entry point: `python -m training <command>` (see `training.cli`): the dataset, run and comparison
commands, and the default model's pipeline steps (fetch-music, render, label, report; the
default model itself is a `train` preset, `training/experiments/default-model.toml`).
The result of a run is a checkpoint in the service's format (`model.checkpoint`).
"""
