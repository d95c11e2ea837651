"""The picture `tagger explain` writes: per tag, its evidence over the log-mel, and over time.

The frequency axis is the mel axis (equal steps in mel, as the network sees it), labelled in Hz
at the evidence bands' edges; the time axis is in seconds. matplotlib is imported by the caller's
check first (the `explain` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from app.pipeline.explain import TrackExplanation


def _hz_label(hz: float) -> str:
    return f"{hz / 1000:.1f}k" if hz >= 1000 else f"{hz:.0f}"


def draw(result: TrackExplanation, scores: list[float], title: str, out: Path) -> None:
    """Write a PNG: one row of (spectrogram + evidence, evidence over time) per tag."""
    spec = result.spectrogram
    level = spec.values.numpy().astype(np.float32) / 255 * (spec.db_max - spec.db_min)
    level += spec.db_min
    rows = len(result.maps)
    figure, axes = plt.subplots(
        rows * 2, 1, figsize=(9, 2.6 * rows + 0.4), dpi=80, squeeze=False,
        gridspec_kw={"height_ratios": [3, 1] * rows},
    )  # fmt: skip
    spec_end = spec.step_seconds * spec.values.shape[1]
    for k, evidence in enumerate(result.maps):
        top, bottom = axes[2 * k, 0], axes[2 * k + 1, 0]
        values = evidence.values.numpy()
        end = evidence.step_seconds * values.shape[1]
        top.imshow(level, origin="lower", aspect="auto", cmap="gray", extent=(0, spec_end, 0, 1))
        top.imshow(
            values, origin="lower", aspect="auto", cmap="magma", alpha=0.55,
            extent=(0, end, 0, 1), vmin=0, vmax=1, interpolation="nearest",
        )  # fmt: skip
        edges = evidence.band_edges_hz
        step = max(1, (len(edges) - 1) // 4)
        positions = np.linspace(0, 1, len(edges))[::step]
        top.set_yticks(positions, [_hz_label(edges[i]) for i in range(0, len(edges), step)])
        top.set_xlim(0, spec_end)
        top.set_ylabel("Hz")
        top.set_title(
            f"{title}: {evidence.tag} (score {scores[k]:.2f}, {evidence.method} evidence)",
            fontsize=10,
        )
        over_time = values.sum(axis=0)
        times = (np.arange(values.shape[1]) + 0.5) * evidence.step_seconds
        bottom.fill_between(times, over_time / max(over_time.max(), 1e-12), color="tab:orange")
        bottom.set_xlim(0, spec_end)
        bottom.set_ylim(0, 1.05)
        bottom.set_yticks([])
        bottom.set_ylabel("over time", fontsize=8)
    axes[-1, 0].set_xlabel("seconds")
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def to_json(result: TrackExplanation, duration_seconds: float) -> dict[str, Any]:
    """The maps as the service returns them (without the spectrogram)."""
    return {
        "method": result.method,
        "duration_seconds": round(duration_seconds, 3),
        "step_seconds": result.maps[0].step_seconds,
        "band_edges_hz": result.maps[0].band_edges_hz,
        "maps": [
            {
                "tag": m.tag,
                "peak": m.peak,
                "values": [[round(v, 3) for v in row] for row in m.values.tolist()],
            }
            for m in result.maps
        ],
    }
