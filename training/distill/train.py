"""Distil MTT_musicnn into a student (q2l-small by default) on the cached corpus.

    python -m training label                              # once: windows + teacher scores
    python -m training train-distilled --preset q2l-small # this file; --resume continues

The student learns the teacher's per-window probabilities with BCE-with-logits (soft labels);
where a render's instrument labels are known they replace the teacher's. The recipe is the
paper's optimiser (Adam, weight decay 1e-4, one-cycle with 20 % warm-up stepped per batch) at a
distillation learning rate. Mixed precision is bf16 autocast on a CPU with native bf16 (AMX or
AVX-512 BF16) and on CUDA GPUs that support it, fp16 on older GPUs, fp32 otherwise, so the same
command runs here with q2l-small and on a GPU with q2l-base. The best epoch (by agreement with
the teacher on the validation split) is exported in the service's checkpoint format with
per-tag thresholds calibrated on validation.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.base import TaggingModel
from model.checkpoint import save_checkpoint
from model.runtime import Precision, resolve_device, resolve_precision
from model.zoo import build_model
from training.distill.data import (
    Split,
    WindowDataset,
    frequent_tag_auc,
    load_split,
    score_split,
)
from training.metrics import calibrate_thresholds


@dataclass
class DistillConfig:
    preset: str = "q2l-small"
    cache: str = "data/distill"
    out: str = "runs/distill-q2l-small"
    epochs: int = 8
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    precision: str = "auto"  # auto | fp32 | bf16 | fp16


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The mixed-precision dtype to train with, or None for fp32: the inference runtime's rule
    (bf16 only where the hardware computes it natively; fp16 on CUDA without bf16)."""
    return resolve_precision(cast(Precision, precision), device)


def agreement(
    model: TaggingModel, split: Split, device: torch.device, dtype: torch.dtype | None
) -> tuple[float, float, np.ndarray]:
    """Macro ROC-AUC against the agreement labels (tags with >= 10 positives), the soft BCE loss,
    and the (N, C) scores."""
    scores = score_split(model, split, device=device, dtype=dtype)
    probabilities = torch.from_numpy(scores).clamp(1e-6, 1 - 1e-6)
    loss = F.binary_cross_entropy(probabilities, torch.from_numpy(split.soft_targets())).item()
    roc, _ = frequent_tag_auc(split.agreement_labels(), scores)
    return float(roc or 0.0), loss, scores


def _state_path(out: Path) -> Path:
    return out / "last.pt"


def train(config: DistillConfig, resume: bool) -> Path:
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    torch.set_num_threads(config.threads)
    # Quiet passages produce denormal floats, which make CPU convolutions up to 10x slower.
    torch.set_flush_denormal(True)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    device = resolve_device("auto")
    dtype = autocast_dtype(device, config.precision)
    print(f"device {device}, autocast {dtype}")

    train_split = load_split(Path(config.cache), "train")
    valid_split = load_split(Path(config.cache), "valid")
    print(f"{len(train_split)} training windows, {len(valid_split)} validation windows")
    shuffle = torch.Generator()
    loader = DataLoader(
        WindowDataset(train_split),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        generator=shuffle,
        pin_memory=device.type == "cuda",
    )
    model = build_model(config.preset).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * len(loader), pct_start=0.2
    )
    start_epoch, best = 0, -1.0
    if resume and _state_path(out).is_file():
        state = torch.load(_state_path(out), map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best = int(state["epoch"]), float(state["best"])
        torch.set_rng_state(state["rng"])
        print(f"resumed after epoch {start_epoch} (best agreement {best:.4f})")

    log_path = out / "log.csv"
    for epoch in range(start_epoch, config.epochs):
        model.train()
        # Seeded per epoch, so a resumed run sees the same order as an uninterrupted one.
        shuffle.manual_seed(config.seed * 1000 + epoch)
        started, total, seen = time.perf_counter(), 0.0, 0
        for windows, targets in tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}"):
            windows = windows.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                logits = model(windows)
            loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(windows)
            seen += len(windows)
        train_seconds = time.perf_counter() - started
        model.eval()
        roc, valid_loss, _ = agreement(model, valid_split, device, dtype)
        row = {
            "epoch": epoch + 1,
            "train_loss": round(total / seen, 5),
            "valid_loss": round(valid_loss, 5),
            "valid_agreement_roc_auc": round(roc, 5),
            "train_seconds": round(train_seconds, 1),
            "windows_per_second": round(seen / train_seconds, 1),
        }
        print(row)
        with log_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if handle.tell() == 0:
                writer.writeheader()
            writer.writerow(row)
        if roc > best:
            best = roc
            torch.save(model.state_dict(), out / "best.pt")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1,
                "best": best,
                "rng": torch.get_rng_state(),
            },
            _state_path(out),
        )
    return export(config, valid_split, device, dtype)


def export(
    config: DistillConfig, valid_split: Split, device: torch.device, dtype: torch.dtype | None
) -> Path:
    """The best epoch as a service checkpoint, thresholds calibrated on validation."""
    out = Path(config.out)
    model = build_model(config.preset)
    model.load_state_dict(torch.load(out / "best.pt", map_location="cpu", weights_only=True))
    model.to(device).eval()
    roc, loss, scores = agreement(model, valid_split, device, dtype)
    thresholds, uncalibrated = calibrate_thresholds(valid_split.agreement_labels(), scores)
    path = save_checkpoint(
        out / f"{config.preset}-distilled.safetensors",
        model.cpu(),
        preset=config.preset,
        thresholds=thresholds,
        provenance={
            "training_data": "real music from 12 Debian packages and rendered music21 pieces; "
            "see docs/model-card.md",
            "teacher": "MTT_musicnn (musicnn==0.1.0, ISC; trained on MagnaTagATune, "
            "CC BY-NC-SA 3.0: non-commercial lineage)",
            "recipe": asdict(config),
            "metrics": {"valid_agreement_roc_auc": roc, "valid_soft_bce": loss},
            "thresholds": "max-F1 per tag on validation against teacher >= 0.3 or ground truth; "
            f"{len(uncalibrated)} tags without positives left at 0.5",
        },
    )
    print(f"exported {path}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = DistillConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    args = vars(parser.parse_args(argv))
    resume = args.pop("resume")
    train(DistillConfig(**args), resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
