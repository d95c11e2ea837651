"""Offline training: datasets, training runs, evaluation, model comparison and export.

Entry point: `python -m training {prepare-mtat,prepare-manifest,train,evaluate,export,compare}`.
The result of a run is a checkpoint in the service's format (`model.checkpoint`).
"""
