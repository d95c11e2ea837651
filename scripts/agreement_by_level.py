"""Agreement with the chosen teachers on the held-out test split, per vocabulary, per window and
per track, for several checkpoints in one run (the report's measures, without the report).

    python scripts/agreement_by_level.py --cache data/v3 CHECKPOINT [CHECKPOINT ...]

For instance v2 (from git: `git show d114cbc:model/weights/default.safetensors > v2.safetensors`)
against the bundled default, on the measures the gate does not compare (per window).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.checkpoint import load_checkpoint  # noqa: E402
from training.distill.data import load_split, score_split  # noqa: E402
from training.distill.evaluation import agreement, taxonomy_columns  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=Path("data/v3"))
    parser.add_argument("checkpoints", type=Path, nargs="+")
    args = parser.parse_args()
    test = load_split(args.cache, "test")
    print("| checkpoint | vocabulary | window ROC-AUC | tags | track ROC-AUC | tags |")
    print("|---|---|---|---|---|---|")
    for path in args.checkpoints:
        checkpoint = load_checkpoint(path)
        scores = score_split(checkpoint.model, test)  # two-vocabulary checkpoints (v2, v3)
        for taxonomy in ("mtt", "msd"):
            result = agreement(test, scores[:, taxonomy_columns(taxonomy)], taxonomy)
            window, track = result["window"], result["track"]
            print(
                f"| {path} | {taxonomy} | {window['macro_roc_auc']:.4f} | {window['tags']} | "
                f"{track['macro_roc_auc']:.4f} | {track['tags']} |"
            )


if __name__ == "__main__":
    main()
