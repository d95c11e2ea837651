"""Measure taught tags (docs/custom-tags.md): MSD tags taught to `default-v1` (MTT tags only).

For every real-music track of the corpus (Debian packages fetched by `python -m training
fetch-music`; splits as training/distill/corpus.py: held-out packages are the valid and test
ones) the same up to 16 evenly spaced windows are run through:

- default-v1: its memory tokens and pooled embedding, in the teach cache (what `tagger teach`
  trains on);
- the MSD teacher default-v2 was distilled from (musicnn-msd-vgg, the one chosen on validation),
  on its own windows: a track's teacher score per MSD tag is the mean of its windows'
  probabilities. It defines the labels: a track is a positive of a tag when its score is in the
  top quarter of all tracks', a negative below the median; the tracks in between are left out;
- default-v2 (`default.safetensors`): its own `msd/…` queries, the ceiling (a query trained
  with every training package's teacher labels).

Then for each tag and each number of positives (5, 10, 20, 50), over several draws: that many
positives and four times as many negatives drawn from the training packages, a query and a
probe trained exactly as `tagger teach` trains them (app.teach.fit), and both scored on every
labelled held-out track, with v2's query beside them. Prints a table; writes JSON with --json.

    python scripts/custom_tags.py --music data/music --json docs/results/custom-tags.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.teach.features import FeatureCache, FileFeatures, file_sha256  # noqa: E402
from app.teach.fit import (  # noqa: E402
    FitConfig,
    Windows,
    average_precision,
    fit_probe,
    fit_query,
    probe_logits,
    query_logits,
    roc_auc,
    track_scores,
)
from model.audio.decode import AudioDecodeError, decode_audio  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.inference import split_windows  # noqa: E402
from model.tags import MSD_TAG_NAMES  # noqa: E402
from scripts.bench.common import cpu_model  # noqa: E402
from training.distill.corpus import package_split  # noqa: E402
from training.fetch_music import RESERVED_PACKAGES  # noqa: E402

TAGS = ("jazz", "electronic", "ambient", "instrumental", "rock")
SIZES = (5, 10, 20, 50)
WEIGHTS = ROOT / "model" / "weights"


def _evenly(windows: torch.Tensor, count: int) -> torch.Tensor:
    if len(windows) <= count:
        return windows
    return windows[torch.linspace(0, len(windows) - 1, count).round().long()]


@torch.inference_mode()
def _mean_probabilities(model: Any, windows: torch.Tensor) -> np.ndarray:
    logits = torch.cat([model(windows[i : i + 8]) for i in range(0, len(windows), 8)])
    return torch.sigmoid(logits.float()).mean(0).numpy()


def prepare(
    music: Path, cache_dir: Path, work: Path, max_windows: int, per_package: int
) -> list[dict[str, Any]]:
    """Per track: split, package, teacher and v2 scores (memoised in `work`), v1 features
    (in the teach cache)."""
    v1 = load_checkpoint(WEIGHTS / "default-v1.safetensors")
    v2 = load_checkpoint(WEIGHTS / "default.safetensors").model
    teacher = load_checkpoint(WEIGHTS / "musicnn-msd-vgg.safetensors").model
    cache = FeatureCache(v1, cache_dir, max_windows=max_windows)
    work.mkdir(parents=True, exist_ok=True)
    memo_path = work / "scores.json"
    memo: dict[str, Any] = json.loads(memo_path.read_text()) if memo_path.exists() else {}
    records = [json.loads(line) for line in (music / "manifest.jsonl").read_text().splitlines()]
    # At most `per_package` tracks of a package (the first by path), so one long soundtrack
    # does not dominate and the run fits a CPU budget.
    by_package: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: r["local_path"]):
        by_package.setdefault(record["package"], []).append(record)
    records = [r for group in by_package.values() for r in group[:per_package]]
    tracks = []
    for record in tqdm(records, desc="tracks", unit="track", file=sys.stderr):
        package = record["package"]
        if package in RESERVED_PACKAGES:  # never used, not even for evaluation
            continue
        path = music / record["local_path"]
        if not path.is_file():
            continue
        key = record["local_path"]
        if key not in memo or not cache.entry(memo[key]["sha256"]).is_file():
            try:
                audio = decode_audio(path, sample_rate=16000)
            except AudioDecodeError:
                continue
            samples = torch.from_numpy(audio.samples)
            windows = cache.windows_of(samples)
            sha = file_sha256(path)
            features: FileFeatures = cache.compute(windows)
            cache.store(sha, features)
            teacher_windows = _evenly(
                split_windows(samples, teacher.audio.window_samples), max_windows
            )
            memo[key] = {
                "sha256": sha,
                "teacher": _mean_probabilities(teacher, teacher_windows).round(5).tolist(),
                "v2": _mean_probabilities(v2, windows).round(5).tolist(),
            }
            memo_path.write_text(json.dumps(memo))
        tracks.append(
            {"key": key, "package": package, "split": package_split(package), **memo[key]}
        )
    return tracks


def measure(
    tracks: list[dict[str, Any]],
    cache: FeatureCache,
    model: Any,
    draws: int,
    config: FitConfig,
) -> dict[str, Any]:
    features = [cache.load("", t["sha256"]) for t in tracks]
    windows = Windows(
        memory=torch.cat([f.memory for f in features]),
        pos=cache.pos,
        embedding=torch.cat([f.embedding for f in features]),
        track=torch.cat(
            [torch.full((len(f.memory),), i, dtype=torch.long) for i, f in enumerate(features)]
        ),
    )
    train = np.array([t["split"] == "train" for t in tracks])
    results: dict[str, Any] = {}
    for tag in TAGS:
        column = MSD_TAG_NAMES.index(tag)
        teacher = np.array([t["teacher"][column] for t in tracks])
        high, median = np.quantile(teacher, 0.75), np.median(teacher)
        label = np.where(teacher >= high, 1, np.where(teacher < median, 0, -1))
        held = np.flatnonzero(~train & (label >= 0))
        held_tracks = torch.from_numpy(held)
        held_windows = windows.subset(held)
        v2 = np.array([tracks[i]["v2"][50 + column] for i in held])
        ceiling = {
            "roc_auc": roc_auc(label[held], v2),
            "pr_auc": average_precision(label[held], v2),
        }
        positives = np.flatnonzero(train & (label == 1))
        negatives = np.flatnonzero(train & (label == 0))
        rows: dict[str, Any] = {}
        for size in SIZES:
            if size > len(positives):
                rows[str(size)] = {"skipped": f"only {len(positives)} training positives"}
                continue
            runs: dict[str, list[float]] = {k: [] for k in ("qr", "qp", "pr", "pp", "seconds")}
            for draw in range(draws):
                rng = np.random.default_rng(1000 * draw + size)
                chosen_pos = rng.choice(positives, size, replace=False)
                chosen_neg = rng.choice(negatives, min(4 * size, len(negatives)), replace=False)
                chosen = np.concatenate([chosen_pos, chosen_neg])
                y = np.concatenate([np.ones(len(chosen_pos)), np.zeros(len(chosen_neg))])
                subset = windows.subset(chosen, config.windows_per_track)
                label_of = dict(zip(chosen.tolist(), y.tolist(), strict=True))
                window_labels = torch.tensor([label_of[t] for t in subset.track.tolist()])
                started = time.monotonic()
                query = fit_query(model, subset, window_labels, config, seed=draw)
                probe = fit_probe(subset, window_labels, config)
                runs["seconds"].append(time.monotonic() - started)
                q = track_scores(query_logits(model, held_windows, query), held_windows.track,
                                 held_tracks)  # fmt: skip
                p = track_scores(probe_logits(held_windows, probe), held_windows.track,
                                 held_tracks)  # fmt: skip
                runs["qr"].append(roc_auc(label[held], q))
                runs["qp"].append(average_precision(label[held], q))
                runs["pr"].append(roc_auc(label[held], p))
                runs["pp"].append(average_precision(label[held], p))
            rows[str(size)] = {
                name: {"mean": float(np.mean(v)), "sd": float(np.std(v))}
                for name, v in runs.items()
            }
        results[tag] = {
            "train_positives": len(positives),
            "train_negatives": len(negatives),
            "held_out_positives": int((label[held] == 1).sum()),
            "held_out_negatives": int((label[held] == 0).sum()),
            "v2_ceiling": ceiling,
            "by_positives": rows,
        }
    return results


def _print(results: dict[str, Any]) -> None:
    print(f"{'tag':<13}{'pos':>4}  {'query ROC':>12} {'probe ROC':>12} {'v2 ROC':>7}  "
          f"{'query PR':>12} {'probe PR':>12} {'v2 PR':>6} {'prev.':>6} {'fit s':>6}")  # fmt: skip
    for tag, result in results.items():
        prevalence = result["held_out_positives"] / (
            result["held_out_positives"] + result["held_out_negatives"]
        )
        for size, row in result["by_positives"].items():
            if "skipped" in row:
                print(f"{tag:<13}{size:>4}  {row['skipped']}")
                continue

            def cell(name: str, row: dict[str, Any] = row) -> str:
                return f"{row[name]['mean']:.3f}±{row[name]['sd']:.3f}"

            print(
                f"{tag:<13}{size:>4}  {cell('qr'):>12} {cell('pr'):>12} "
                f"{result['v2_ceiling']['roc_auc']:>7.3f}  {cell('qp'):>12} {cell('pp'):>12} "
                f"{result['v2_ceiling']['pr_auc']:>6.3f} {prevalence:>6.2f} "
                f"{row['seconds']['mean']:>6.1f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--music", type=Path, default=ROOT / "data" / "music")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "custom-tags")
    parser.add_argument("--cache", type=Path, default=None, help="teach cache (default: --work)")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--steps", type=int, default=FitConfig().query_steps)
    parser.add_argument("--query-start", choices=["mean", "nearest"], default="nearest")
    parser.add_argument("--windows", type=int, default=16, help="windows cached per track")
    parser.add_argument("--per-package", type=int, default=1000, help="tracks per package")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
    torch.set_num_threads(args.threads)
    cache_dir = args.cache or args.work / "cache"
    tracks = prepare(args.music, cache_dir, args.work, args.windows, args.per_package)
    v1 = load_checkpoint(WEIGHTS / "default-v1.safetensors")
    for parameter in v1.model.parameters():
        parameter.requires_grad_(False)
    cache = FeatureCache(v1, cache_dir, max_windows=args.windows)
    torch.set_num_threads(1)  # fits: small matrices (see app/teach/teach.py)
    config = FitConfig(query_steps=args.steps, query_start=args.query_start)
    results = measure(tracks, cache, v1.model, args.draws, config)
    _print(results)
    if args.json is not None:
        document = {
            "command": "python scripts/custom_tags.py " + " ".join(sys.argv[1:]),
            "date": dt.date.today().isoformat(),
            "machine": f"{cpu_model()}, {os.cpu_count()} CPUs; fits on 1 torch thread",
            "tracks": {
                split: sum(t["split"] == split for t in tracks)
                for split in ("train", "valid", "test")
            },
            "fit_config": config.__dict__,
            "draws": args.draws,
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
