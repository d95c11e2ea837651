"""A small MagnaTagATune look-alike in the real layout, with real mp3 files.

Folders `0`..`f` hold mp3s encoded with PyAV's libmp3lame; `annotations_final.csv` is
tab-separated and fully quoted like the real file, with `clip_id`, 188 tag columns (the 50 real
top-50 tags among 138 filler names, in a shuffled order as in the real file) and `mp3_path`.
Each clip's audio is a chord of tones whose pitches encode its tags, so a model can learn them.
One listed mp3 is empty (the real archive has a few broken files) and one clip carries only
filler tags (the folder split must drop it).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from model.tags import MTAT_TAG_NAMES
from training.data.store import DatasetWriter, PreparedDataset

FOLDERS = "0123456789abcdef"
FILLER_TAGS = tuple(f"filler {i:03d}" for i in range(188 - len(MTAT_TAG_NAMES)))
# Tags the fake clips use; the other 42 top-50 tags never occur (they must be skipped, listed).
USED_TAGS = MTAT_TAG_NAMES[:8]

# Tiny model configs for fast tests (the presets' own widths are too slow for a test suite):
# narrow layers and 32 mel bands instead of 128.
_TINY_Q2L = {
    "backbone_channels": [8, 8, 16, 16, 16],
    "d_model": 16,
    "dim_feedforward": 32,
    "mel": {"n_mels": 32},
}
TINY_MODELS: dict[str, dict[str, object]] = {
    "q2l-small": _TINY_Q2L,
    "q2l-base": _TINY_Q2L,
    "rescnn": {"channels": [8, 8, 8, 8, 8, 8, 16], "mel": {"n_mels": 32}},
    "musicnn": {
        "timbral_filters": 8,
        "temporal_filters": 4,
        "midend_filters": 8,
        "dense_units": 16,
    },
    "hcnn": {"channels": 8},
}


def encode_mp3(path: Path, samples: np.ndarray, rate: int) -> None:
    """Encode a mono float waveform as a real mp3 with libmp3lame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            samples.astype(np.float32)[None, :], format="fltp", layout="mono"
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def tone_chord(tags: list[int], seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A waveform whose tones encode `tags` (tag k -> 220 · 2^(k/4) Hz) plus a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * 220.0 * 2 ** (k / 4) * t + rng.uniform(0, 6)) for k in tags)
    wave = 0.25 * np.asarray(wave) + 0.01 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


@dataclass(frozen=True)
class FakeMtat:
    root: Path
    annotations: Path
    mp3_paths: list[str]
    labels: np.ndarray  # (rows, 50) top-50 labels per CSV row
    broken: str  # mp3_path of the empty file
    untagged: str  # mp3_path of the clip with only filler tags


def make_fake_mtat(
    root: Path, *, clips_per_folder: int = 3, seconds: float = 5.0, rate: int = 22050, seed: int = 0
) -> FakeMtat:
    """Write the fake dataset under `root`; see the module docstring."""
    rng = np.random.default_rng(seed)
    columns = list(MTAT_TAG_NAMES) + list(FILLER_TAGS)
    rng.shuffle(columns)
    rows: list[dict[str, str]] = []
    mp3_paths: list[str] = []
    labels = []
    broken = untagged = ""
    clip_id = 2  # the real file starts at clip_id 2
    for folder in FOLDERS:
        for j in range(clips_per_folder):
            mp3_path = f"{folder}/fake_artist_{folder}-fake_album-{j + 1:02d}-track_{j}-0-29.mp3"
            if folder == "0" and j == 0:
                tags: list[int] = []
                untagged = mp3_path
            else:
                tags = sorted(rng.choice(len(USED_TAGS), size=2, replace=False).tolist())
            row_labels = np.zeros(len(MTAT_TAG_NAMES), dtype=np.uint8)
            row_labels[tags] = 1
            values = {name: "0" for name in columns}
            for k in tags:
                values[MTAT_TAG_NAMES[k]] = "1"
            for name in FILLER_TAGS:
                values[name] = str(int(rng.random() < 0.1))
            path = root / mp3_path
            if folder == "5" and j == 1:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")  # as MTAT's broken files: present but empty
                broken = mp3_path
            else:
                encode_mp3(path, tone_chord(tags or [12], seconds, rate, rng), rate)
            rows.append({"clip_id": str(clip_id), **values, "mp3_path": mp3_path})
            mp3_paths.append(mp3_path)
            labels.append(row_labels)
            clip_id += 1
    annotations = root / "annotations_final.csv"
    with annotations.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle,
            fieldnames=["clip_id", *columns, "mp3_path"],
            delimiter="\t",
            quoting=csv.QUOTE_ALL,
        )
        writer.writeheader()
        writer.writerows(rows)
    return FakeMtat(root, annotations, mp3_paths, np.stack(labels), broken, untagged)


def subset(source: Path, out: Path, per_split: dict[str, int]) -> Path:
    """The first few clips of each split of a prepared dataset, as a dataset of its own."""
    data = PreparedDataset.open(source)
    writer = DatasetWriter(out, sample_rate=data.sample_rate, dtype="int16", n_classes=50)
    for split, count in per_split.items():
        for index in data.split_indices(split)[:count]:
            key = str(data.keys[index])
            writer.add(key, key, data.read(int(index)), data.labels[index], split)
    return writer.finish(data.tags, source=data.info["source"]).root


def write_annotations_only(path: Path, mp3_paths: list[str], labels: np.ndarray) -> None:
    """An annotations_final.csv without audio (for split tests), real column layout."""
    columns = list(MTAT_TAG_NAMES) + list(FILLER_TAGS[:10])
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_ALL)
        writer.writerow(["clip_id", *columns, "mp3_path"])
        for i, (mp3_path, row) in enumerate(zip(mp3_paths, labels, strict=True)):
            tag_values = [str(int(v)) for v in row] + ["0"] * 10
            writer.writerow([str(i + 2), *tag_values, mp3_path])


def tiny_model_args(preset: str) -> list[str]:
    """`--set model.KEY=VALUE` arguments that shrink `preset` for tests."""
    return [
        arg
        for key, value in TINY_MODELS[preset].items()
        for arg in ("--set", f"model.{key}={json.dumps(value)}")
    ]
