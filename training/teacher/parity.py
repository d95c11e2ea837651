"""How far our converted musicnn teachers are from the original TensorFlow models.

Reads a reference file recorded with the original TF code by
`scripts/record_musicnn_reference.py` (the committed synthetic fixture, or one recorded with
`--audio FILE...` from real tracks and kept out of git) and prints, per checkpoint, the max
|torch - TF| of the sigmoid outputs on the same float32 log-mel: on musicnn's 187-frame patches
and on the student's 231-frame windows.

    python -m training.teacher.parity tests/fixtures/musicnn_reference.npz
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_checkpoint
from model.musicnn import Musicnn
from model.musicnn_vgg import MusicnnVgg
from training.teacher.musicnn_weights import TEACHERS, WEIGHTS_DIR

PATCH_FRAMES = 187
WINDOW_FRAMES = 231


def _slices(
    clip_logmel: np.ndarray, clips: np.ndarray, frames: np.ndarray, length: int
) -> torch.Tensor:
    return torch.from_numpy(
        np.stack([clip_logmel[c, f : f + length] for c, f in zip(clips, frames, strict=True)])
    )


def max_differences(
    reference: Path, weights_dir: Path = WEIGHTS_DIR, batch: int = 64
) -> dict[str, tuple[float, float, int, int]]:
    """Per TF checkpoint name: (max diff on patches, on windows, n patches, n windows)."""
    with np.load(reference) as data:
        ref = {key: data[key] for key in data.files}
    patches = _slices(ref["clip_logmel"], ref["patch_clip"], ref["patch_frame"], PATCH_FRAMES)
    windows = _slices(ref["clip_logmel"], ref["window_clip"], ref["window_frame"], WINDOW_FRAMES)
    results: dict[str, tuple[float, float, int, int]] = {}
    for name, teacher in TEACHERS.items():
        model = load_checkpoint(weights_dir / teacher.filename).model
        if not isinstance(model, Musicnn | MusicnnVgg):
            raise ValueError(f"{teacher.filename} is not a musicnn teacher")
        with torch.no_grad():
            ours_p = torch.cat(
                [torch.sigmoid(model.forward_log_mel(x)) for x in torch.split(patches, batch)]
            )
            ours_w = torch.cat(
                [torch.sigmoid(model.forward_log_mel(x)) for x in torch.split(windows, batch)]
            )
        patch_diff = float(np.abs(ours_p.numpy() - ref[f"{name}_probabilities"]).max())
        window_diff = float(np.abs(ours_w.numpy() - ref[f"{name}_window_probabilities"]).max())
        results[name] = (patch_diff, window_diff, len(patches), len(windows))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="file made by record_musicnn_reference.py")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    print("| checkpoint | file | max diff, patches | max diff, 231-frame windows |")
    print("|---|---|---|---|")
    for name, (p, w, n_p, n_w) in max_differences(args.reference, args.weights_dir).items():
        print(f"| {name} | {TEACHERS[name].filename} | {p:.2e} ({n_p}) | {w:.2e} ({n_w}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
