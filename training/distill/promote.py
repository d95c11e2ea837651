"""Make a candidate the bundled default model, only if it passed the regression gate.

    python -m training promote --candidate runs/v3-q2l-small/model.safetensors
        [--gate runs/v3-q2l-small/gate.json] [--force]

The gate file is what `python -m training report --candidate ...` wrote. The copy into
`model/weights/default.safetensors` is refused (exit 1) when the gate failed, when it was run on
another file (its sha256 differs) or when there is no gate file. `--force` replaces the default
anyway and writes the forced replacement, with every comparison it failed, into the model card,
so a regression can never ship silently.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.distill.report import file_sha256

DEFAULT = Path("model/weights/default.safetensors")
MODEL_CARD = Path("docs/model-card.md")
FORCED_HEADING = "## Forced replacements"


class PromotionRefusedError(Exception):
    """Why the candidate may not become the default."""


def gate_verdict(candidate: Path, gate_file: Path) -> tuple[bool, list[str], dict[str, Any]]:
    """(passed, the failed comparisons as text, the gate document) for `candidate`.

    Raises:
        PromotionRefusedError: no gate file, or one measured on another file.
    """
    if not gate_file.is_file():
        raise PromotionRefusedError(
            f"{gate_file} not found: run `python -m training report --candidate {candidate}`"
        )
    document: dict[str, Any] = json.loads(gate_file.read_text())
    if document.get("candidate_sha256") != file_sha256(candidate):
        raise PromotionRefusedError(f"{gate_file} was measured on another file than {candidate}")
    failed = [
        f"{c['measure']} vs {c['reference']}: {c['difference']:+.4f} "
        f"[{c['low']:+.4f}, {c['high']:+.4f}]"
        for c in document["comparisons"]
        if c["regression"]
    ] + [f"{measure}: not measurable" for measure in document.get("unmeasured", [])]
    return bool(document["passed"]) and not failed, failed, document


def record_forced(card: Path, candidate: Path, failed: Sequence[str], gate_file: Path) -> None:
    """Append the forced replacement to the model card, under its own heading."""
    text = card.read_text() if card.is_file() else ""
    if FORCED_HEADING not in text:
        text = text.rstrip("\n") + (
            f"\n\n{FORCED_HEADING}\n\nDefaults that replaced the previous one although the "
            "regression gate found them worse (`make default-model FORCE_DEFAULT=1`):\n"
        )
    entry = (
        f"\n- {dt.date.today().isoformat()}: `{candidate}` (sha256 {file_sha256(candidate)[:16]}), "
        f"gate `{gate_file}`, worse beyond noise on: " + "; ".join(failed) + "\n"
    )
    card.write_text(text.rstrip("\n") + "\n" + entry)


def promote(
    candidate: Path,
    gate_file: Path,
    *,
    force: bool = False,
    default: Path = DEFAULT,
    card: Path = MODEL_CARD,
) -> bool:
    """Copy `candidate` over `default` if the gate passed (or `force`); returns whether the
    replacement was forced past a failed gate.

    Raises:
        PromotionRefusedError: the gate failed (without `force`), is missing or is another file's.
    """
    passed, failed, _ = gate_verdict(candidate, gate_file)
    if not passed and not force:
        raise PromotionRefusedError(
            f"{candidate} is worse than a reference beyond noise on: {'; '.join(failed)}. "
            "The default was not replaced (FORCE_DEFAULT=1 / --force overrides and records it "
            "in the model card)"
        )
    shutil.copyfile(candidate, default)
    if not passed:
        record_forced(card, candidate, failed, gate_file)
    return not passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--gate", type=Path, default=None, help="default: beside the candidate")
    parser.add_argument("--force", action="store_true", help="replace even if the gate failed")
    parser.add_argument("--default", type=Path, default=DEFAULT)
    parser.add_argument("--model-card", type=Path, default=MODEL_CARD)
    args = parser.parse_args(argv)
    if not args.candidate.is_file():
        print(f"error: {args.candidate} not found", file=sys.stderr)
        return 2
    gate_file = args.gate or args.candidate.with_name("gate.json")
    try:
        forced = promote(
            args.candidate, gate_file, force=args.force, default=args.default, card=args.model_card
        )
    except PromotionRefusedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    note = " (FORCED past a failed gate; recorded in the model card)" if forced else ""
    print(f"{args.candidate} -> {args.default}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
