"""Command line: `python -m training <command>`; every run command works under `torchrun` too.

fetch-music       DFSG-free music from Debian packages -> data/music
render            music21 scores played by GM programs -> labelled audio (data/rendered)
label             audio windows + the four musicnn teachers' scores -> cache (data/distill)
choose-teachers   per vocabulary: one teacher or the mean of two, on validation ground truth
prepare-mtat      MagnaTagATune folder (+ Won et al.'s split files) -> prepared dataset
prepare-manifest  own audio + manifest + vocabulary -> prepared dataset
prepare-distill   the teacher-labelled cache (data/distill) -> prepared dataset (--soft: the
                  chosen teachers' soft targets over all 100 tags, for distillation)
train             one run (paper's recipe by default; --config for a TOML/JSON file; the
                  default model: --config training/experiments/default-model.toml)
evaluate          a checkpoint or run on one split: macro ROC/PR-AUC and a per-tag table
export            a run's best model -> service checkpoint (calibrated thresholds)
compare           several models × seeds with one recipe -> results table and plot
report            the default model's report (teacher agreement, rendered-audio AUCs);
                  --candidate: the regression gate against the default and v1
label-patches     v3: whole-track log-mels + teacher scores every quarter window (data/v3)
train-distill     v3: random crops of every track, until validation stops improving
promote           a candidate -> model/weights/default.safetensors, only if the gate passed
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import torch

from model.checkpoint import CheckpointError
from training.cli import prepare, runs, steps
from training.cli.common import configure_logging
from training.config import ConfigError
from training.data.store import DatasetError
from training.run import RunError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare.register(commands)
    runs.register(commands)
    steps.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (2 with a one-line message for bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # A step's arguments, --help included, are its own: argparse would claim leading options.
    if argv and argv[0] in steps.STEPS:
        return steps.run_step(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    # Quiet passages make subnormal floats in the spectrogram; on CPU they slow the mel
    # projection and convolutions by up to 10x. Flushing them to zero changes no result we use.
    torch.set_flush_denormal(True)
    configure_logging(int(os.environ.get("RANK", "0")))
    try:
        args.handler(args)
    except (DatasetError, CheckpointError, ConfigError, RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
