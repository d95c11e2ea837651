"""The default model's pipeline steps, each one the command line of the module that does it.

`python -m training STEP ARGS...` hands ARGS to that module's `main` untouched, so `--help`
shows the step's own options and the modules stay usable on their own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

Main = Callable[[Sequence[str] | None], int | None]


def _fetch_music(argv: Sequence[str]) -> int | None:
    from training.fetch_music import main

    return main(argv)


def _render(argv: Sequence[str]) -> int | None:
    from training.distill.render.cli import main

    main(argv)
    return 0


def _label(argv: Sequence[str]) -> int | None:
    from training.distill.cache import main

    return main(argv)


def _label_patches(argv: Sequence[str]) -> int | None:
    from training.distill.patches import main

    return main(argv)


def _train_distill(argv: Sequence[str]) -> int | None:
    from training.distill.trainer import main

    return main(argv)


def _promote(argv: Sequence[str]) -> int | None:
    from training.distill.promote import main

    return main(argv)


def _choose_teachers(argv: Sequence[str]) -> int | None:
    from training.distill.choose import main

    return main(argv)


def _report(argv: Sequence[str]) -> int | None:
    from training.distill.report import main

    return main(argv)


STEPS: dict[str, tuple[Callable[[Sequence[str]], int | None], str]] = {
    "fetch-music": (_fetch_music, "fetch DFSG-free music from Debian packages into data/music"),
    "render": (_render, "render music21 scores with GM programs into labelled audio"),
    "label": (_label, "cache audio windows and the four teachers' scores (data/distill)"),
    "label-patches": (
        _label_patches,
        "v3: log-mels of whole tracks and teacher scores every quarter window (data/v3)",
    ),
    "choose-teachers": (
        _choose_teachers,
        "per vocabulary, one teacher or the mean of two, chosen on validation ground truth",
    ),
    "train-distill": (
        _train_distill,
        "v3: train on random crops of every track until validation stops improving",
    ),
    "report": (
        _report,
        "the default model's report; with --candidate, the regression gate against it and v1",
    ),
    "promote": (
        _promote,
        "copy a candidate into model/weights/default.safetensors if it passed the gate",
    ),
}


def register(commands: Any) -> None:
    """Add the pipeline steps to `commands` (an argparse subparsers action)."""
    for name, (_, help_text) in STEPS.items():
        # Listed for the top-level help; `main` hands the arguments over before parsing.
        step = commands.add_parser(name, help=help_text, add_help=False)
        step.add_argument("args", nargs=argparse.REMAINDER)


def run_step(name: str, argv: Sequence[str]) -> int:
    """Run one step with its own arguments; returns its exit status."""
    status = STEPS[name][0](list(argv))
    return int(status or 0)
