"""Which embedding finds a track again: first half against second halves, on held-out music.

Every track of the held-out packages is cut into its first and second half. Each half is cut into
windows exactly as the service cuts an upload (`model.inference.split_windows`); every candidate
embedding is computed per window, L2-normalised, averaged over the half's windows and normalised
again (the service's rule, `model.embedding.track_embedding`). The second halves of all tracks
form the catalogue; each first half queries it by cosine similarity, and recall@k is the share of
queries whose own second half is among the k nearest.

Candidates of the served Query2Label model (taken with forward hooks, so the model is unchanged):
the backbone's feature map (mean, and mean with max), the audio tokens before and after the
transformer encoder (mean over the 4 × 8 tokens), the label queries' decoder outputs (mean over
the labels), and the tag-score vector baseline (the track's mean scores as a vector). The
bundled teacher (MTT_musicnn) adds its penultimate 200-unit layer, the embedding musicnn's own
extractor returns, and its scores.

Held out: the default model's test packages (`training.distill.corpus.TEST_PACKAGES`), never used
in its training or validation; the reserved packages are refused.

    python scripts/fetch_music.py --dest data/heldout --packages singularity-music \
        freedroidrpg-data fretsonfire-songs-sectoid supertuxkart-data
    nice .venv/bin/python scripts/similarity_retrieval.py --music data/heldout \
        --out docs/results/similarity-retrieval.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.audio.decode import decode_audio  # noqa: E402
from model.base import TaggingModel  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.inference import split_windows  # noqa: E402
from training.distill.corpus import TEST_PACKAGES  # noqa: E402
from training.fetch_music import RESERVED_PACKAGES  # noqa: E402

Pool = Callable[[Tensor], Tensor]
"""A captured layer output for a batch of windows -> (B, D) per-window vectors."""


def _mean_tokens(x: Tensor) -> Tensor:  # (B, N, D) -> (B, D)
    return x.float().mean(dim=1)


def _mean_map(x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C)
    return x.float().mean(dim=(2, 3))


def _mean_max_map(x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, 2C)
    return torch.cat((x.float().mean(dim=(2, 3)), x.float().amax(dim=(2, 3))), dim=1)


def _tokens_map(x: Tensor) -> Tensor:  # input_proj output (B, D, H, W) -> (B, D)
    return x.float().mean(dim=(2, 3))


def _relu(x: Tensor) -> Tensor:
    return F.relu(x.float())


def candidates(model: TaggingModel) -> dict[str, tuple[nn.Module, Pool]]:
    """name -> (module whose output is captured, pooling) for this architecture."""
    if model.architecture == "q2l":
        layers: Any = model
        found: dict[str, tuple[nn.Module, Pool]] = {
            "backbone (mean)": (layers.backbone, _mean_map),
            "backbone (mean+max)": (layers.backbone, _mean_max_map),
            "tokens before the encoder (mean)": (layers.input_proj, _tokens_map),
            "encoder output (mean over tokens)": (layers.encoder[-1], _mean_tokens),
            "label-query decoder outputs (mean over labels)": (layers.decoder_norm, _mean_tokens),
        }
        return found
    if model.architecture == "musicnn":
        return {"penultimate dense 200 (musicnn extractor)": (model.dense1, _relu)}  # type: ignore[dict-item]
    return {}


@torch.inference_mode()
def half_embeddings(
    model: TaggingModel, halves: list[Tensor], batch: int = 16
) -> dict[str, Tensor]:
    """name -> (n_halves, D) track-level embeddings (window-normalised, mean, normalised)."""
    hooks = candidates(model)
    captured: dict[str, Tensor] = {}
    handles = []
    for name, (module, pool) in hooks.items():

        def hook(_m: nn.Module, _i: Any, output: Any, name: str = name, pool: Pool = pool) -> None:
            captured[name] = pool(output)

        handles.append(module.register_forward_hook(hook))
    out: dict[str, list[Tensor]] = {name: [] for name in [*hooks, "tag scores (baseline)"]}
    try:
        for half in halves:
            windows = split_windows(half, model.audio.window_samples)
            per_window: dict[str, list[Tensor]] = {name: [] for name in out}
            for start in range(0, windows.shape[0], batch):
                logits = model(windows[start : start + batch])
                per_window["tag scores (baseline)"].append(torch.sigmoid(logits.float()))
                for name in hooks:
                    per_window[name].append(F.normalize(captured[name], dim=1))
            for name, rows in per_window.items():
                stacked = torch.cat(rows)
                out[name].append(F.normalize(stacked.mean(dim=0), dim=0))
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.stack(rows) for name, rows in out.items()}


def recall(queries: Tensor, gallery: Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """Query i's match is gallery row i; recall@k over all queries (cosine similarity)."""
    similarity = queries @ gallery.T
    own = similarity.diagonal().unsqueeze(1)
    rank = (similarity > own).sum(dim=1)  # how many other halves come before the true one
    return {f"recall@{k}": float((rank < k).float().mean()) for k in ks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--music", type=Path, required=True, help="a fetch_music.py --dest folder")
    parser.add_argument(
        "--packages", nargs="+", default=sorted(TEST_PACKAGES), help="held-out packages"
    )
    parser.add_argument("--student", type=Path, default=ROOT / "model/weights/default.safetensors")
    parser.add_argument(
        "--teacher", type=Path, default=ROOT / "model/weights/musicnn-mtt.safetensors"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    if RESERVED_PACKAGES & set(args.packages):
        parser.error(
            f"reserved packages may not be used: {sorted(RESERVED_PACKAGES & set(args.packages))}"
        )
    torch.set_num_threads(args.threads)
    records = [
        json.loads(line) for line in (args.music / "manifest.jsonl").read_text().splitlines()
    ]
    tracks = sorted(
        args.music / r["local_path"] for r in records if r["package"] in set(args.packages)
    )
    started = time.monotonic()
    ks = (1, 10)
    results: list[dict[str, Any]] = []
    first_halves: dict[int, list[Tensor]] = {}
    second_halves: dict[int, list[Tensor]] = {}
    for path in [args.student, args.teacher]:
        checkpoint = load_checkpoint(path)
        model = checkpoint.model.eval()
        rate = model.audio.sample_rate
        if rate not in first_halves:
            firsts, seconds = [], []
            for track in tracks:
                samples = torch.from_numpy(decode_audio(str(track), sample_rate=rate).samples)
                middle = samples.shape[0] // 2
                firsts.append(samples[:middle])
                seconds.append(samples[middle:])
            first_halves[rate], second_halves[rate] = firsts, seconds
        queries = half_embeddings(model, first_halves[rate])
        gallery = half_embeddings(model, second_halves[rate])
        for name in queries:
            figures = recall(queries[name], gallery[name], ks)
            dim = int(queries[name].shape[1])
            results.append({"model": checkpoint.model_id, "embedding": name, "dim": dim, **figures})
            print(
                f"{checkpoint.model_id:28s} {name:48s} dim {dim:5d}  "
                + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()),
                flush=True,
            )
    elapsed = time.monotonic() - started
    hours = sum(t.shape[0] for t in first_halves[16000]) * 2 / 16000 / 3600
    print(f"{len(tracks)} tracks ({hours:.2f} h) from {args.packages} in {elapsed:.0f} s")
    if args.out:
        document = {
            "command": "python " + " ".join(sys.argv),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}",
            "packages": args.packages,
            "tracks": len(tracks),
            "audio_hours": round(hours, 3),
            "results": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
