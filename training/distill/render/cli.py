"""The `python -m training.distill.render` command line."""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from training.distill.render.pool import render_corpus, summarise
from training.distill.render.programs import MAX_SECONDS, MIN_SECONDS
from training.distill.render.soundfonts import SOUNDFONT_BY_NAME


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dest", type=Path, default=Path("data/rendered"))
    parser.add_argument("--pieces", type=int, default=120, help="usable corpus pieces to render")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS)
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS)
    parser.add_argument(
        "--piano-fraction",
        type=float,
        default=0.3,
        help="fraction of pieces also rendered as solo piano",
    )
    parser.add_argument(
        "--heldout-mixes",
        type=int,
        default=2,
        help="random-program renders per valid/test piece (train: 1)",
    )
    parser.add_argument(
        "--choral-pieces",
        type=int,
        default=50,
        help="choral pieces (Bach chorales first) rendered as a choir and as a solo voice",
    )
    parser.add_argument(
        "--vox-fraction",
        type=float,
        default=0.15,
        help="fraction of the other pieces also rendered with a solo voice on the top part",
    )
    parser.add_argument(
        "--drum-fraction",
        type=float,
        default=0.35,
        help="fraction of random-mix and solo-voice renders given a generated drum part",
    )
    parser.add_argument(
        "--soundfonts",
        nargs="+",
        choices=sorted(SOUNDFONT_BY_NAME),
        default=list(SOUNDFONT_BY_NAME),
        help="soundfonts dealt to the renders in turn (the Debian ones are fetched)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # music21 warns about every overfull measure of every encoding; the renders do not care.
    warnings.filterwarnings("ignore", module=r"music21\b")
    started = time.perf_counter()
    rows = render_corpus(
        args.dest,
        pieces=args.pieces,
        seed=args.seed,
        workers=args.workers,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        piano_fraction=args.piano_fraction,
        heldout_mixes=args.heldout_mixes,
        choral_pieces=args.choral_pieces,
        vox_fraction=args.vox_fraction,
        drum_fraction=args.drum_fraction,
        soundfonts=args.soundfonts,
    )
    print(summarise(rows))
    total = sum(row["duration_s"] for row in rows)
    print(
        f"{len(rows)} renders, {total / 3600:.2f} h of audio, "
        f"{time.perf_counter() - started:.0f} s wall time"
    )
