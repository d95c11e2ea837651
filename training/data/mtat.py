"""MagnaTagATune: top-50 labels, the two splits, and preparation into the dataset cache.

Input is a user's MTAT folder: the 16 mp3 folders `0`..`f` (directly or under `mp3/`) and
`annotations_final.csv` (tab-separated, quoted: `clip_id`, 188 tag columns, `mp3_path`).

Two splits (never mix them, and never mix either with Pons et al.'s musicnn split):

* "won": the split files of Won et al. (`train.npy`, `valid.npy`, `test.npy`, `binary.npy`,
  `tags.npy` from minzwon/sota-music-tagging-models `split/mtat/`). Each split line is
  `"<row>\\t<folder>/<file>.mp3"`, where `<row>` is the 0-based row of `annotations_final.csv`
  and of `binary.npy`, which holds the labels. Valid and test must have 1,529 and 4,332 clips.
* "folders": the split described in the paper, from the CSV alone: clips with at least one
  top-50 tag, folders 0-b train, c valid, d-f test. Lee's split files also drop clips shorter
  than 29.1 s, so counts can differ slightly from "won".
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from model.config import AudioConfig
from model.tags import MTAT_TAG_NAMES, MTAT_TAGS
from training.data.decode import ClipSpec, build_dataset
from training.data.store import DatasetError, PreparedDataset, SampleDType

log = logging.getLogger(__name__)

SplitMethod = Literal["won", "folders"]
MTAT_FOLDERS = tuple("0123456789abcdef")
FOLDER_SPLIT = {
    **{folder: "train" for folder in "0123456789ab"},
    "c": "valid",
    **{folder: "test" for folder in "def"},
}
WON_EXPECTED_COUNTS = {"valid": 1529, "test": 4332}
WON_FILES = ("train.npy", "valid.npy", "test.npy", "binary.npy", "tags.npy")
WON_URL = "https://github.com/minzwon/sota-music-tagging-models/raw/master/split/mtat/"
LICENCE = "MagnaTagATune audio and annotations: CC BY-NC-SA 3.0 (non-commercial use only)"


@dataclass(frozen=True)
class Annotations:
    """The parts of `annotations_final.csv` that training needs.

    Attributes:
        clip_ids: (N,) the `clip_id` column.
        mp3_paths: (N,) the `mp3_path` column, e.g. "f/american_bach_soloists-...-30-59.mp3".
        top50: (N, 50) uint8 labels in `tags.npy` order (`model.tags.MTAT_TAG_NAMES`).
        n_tag_columns: How many tag columns the file has (188 in the real file).
    """

    clip_ids: list[str]
    mp3_paths: list[str]
    top50: np.ndarray
    n_tag_columns: int


@dataclass(frozen=True)
class SplitClip:
    row: int
    split: str
    labels: np.ndarray


def read_annotations(path: str | Path) -> Annotations:
    """Parse `annotations_final.csv`.

    Raises:
        DatasetError: missing file, missing columns (any of the top-50 tags), ragged rows or
            values other than 0/1.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotations file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if not header or "clip_id" not in header or "mp3_path" not in header:
            raise DatasetError(
                f"{path} is not MTAT's annotations_final.csv: it needs tab-separated columns "
                "clip_id, the tag columns and mp3_path"
            )
        missing = [name for name in MTAT_TAG_NAMES if name not in header]
        if missing:
            raise DatasetError(f"{path} lacks top-50 tag columns: {', '.join(missing)}")
        id_col, path_col = header.index("clip_id"), header.index("mp3_path")
        tag_cols = [header.index(name) for name in MTAT_TAG_NAMES]
        clip_ids, mp3_paths, rows = [], [], []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetError(
                    f"{path}:{line_no}: {len(row)} fields where the header has {len(header)}"
                )
            try:
                values = [int(row[col]) for col in tag_cols]
            except ValueError:
                raise DatasetError(f"{path}:{line_no}: tag values must be 0 or 1") from None
            clip_ids.append(row[id_col])
            mp3_paths.append(row[path_col])
            rows.append(values)
    top50 = np.array(rows, dtype=np.uint8).reshape(-1, len(MTAT_TAG_NAMES))
    if top50.size and top50.max() > 1:
        raise DatasetError(f"{path}: tag values must be 0 or 1")
    return Annotations(clip_ids, mp3_paths, top50, n_tag_columns=len(header) - 2)


def folder_split(annotations: Annotations) -> list[SplitClip]:
    """The paper's split from the CSV alone: clips with a top-50 tag, 0-b/c/d-f."""
    clips = []
    for row, mp3_path in enumerate(annotations.mp3_paths):
        folder = mp3_path.split("/", 1)[0]
        if folder not in FOLDER_SPLIT:
            raise DatasetError(
                f"annotations row {row}: mp3_path {mp3_path!r} is not in one of the folders 0..f"
            )
        labels = annotations.top50[row]
        if labels.any():
            clips.append(SplitClip(row, FOLDER_SPLIT[folder], labels))
    return clips


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(
            f"split file not found: {path} (download the five files {', '.join(WON_FILES)} "
            f"from {WON_URL})"
        )
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        raise DatasetError(f"{path} is not a plain numpy array file: {error}") from error


def won_split(
    annotations: Annotations, split_dir: str | Path, *, check_counts: bool = True
) -> list[SplitClip]:
    """Won et al.'s split, checked against the annotations and the published counts.

    Raises:
        DatasetError: a missing or malformed file, tags.npy not in the expected order, a split
            line whose path disagrees with the CSV row it points at, a clip in two splits, or
            (with `check_counts`) valid/test counts other than 1,529/4,332.
    """
    split_dir = Path(split_dir)
    tags = [str(tag) for tag in _load_npy(split_dir / "tags.npy")]
    if tags != list(MTAT_TAG_NAMES):
        diff = next(
            (i for i, (a, b) in enumerate(zip(tags, MTAT_TAG_NAMES, strict=False)) if a != b),
            min(len(tags), len(MTAT_TAG_NAMES)),
        )
        raise DatasetError(
            f"{split_dir / 'tags.npy'} is not the standard top-50 list: {len(tags)} tags, first "
            f"difference at position {diff} (expected the order in model.tags.MTAT_TAG_NAMES)"
        )
    binary = _load_npy(split_dir / "binary.npy")
    if binary.ndim != 2 or binary.shape[1] != len(MTAT_TAG_NAMES):
        raise DatasetError(f"binary.npy must have shape (rows, 50), got {binary.shape}")
    clips: list[SplitClip] = []
    seen: dict[int, str] = {}
    for split in ("train", "valid", "test"):
        lines = _load_npy(split_dir / f"{split}.npy")
        for line in lines.reshape(-1):
            text = str(line)
            try:
                row_text, mp3_path = text.split("\t", 1)
                row = int(row_text)
            except ValueError:
                raise DatasetError(
                    f"{split}.npy: line {text!r} is not '<row>\\t<folder>/<file>.mp3'"
                ) from None
            if not 0 <= row < min(len(annotations.mp3_paths), len(binary)):
                raise DatasetError(
                    f"{split}.npy: row {row} is outside annotations_final.csv "
                    f"({len(annotations.mp3_paths)} rows) or binary.npy ({len(binary)} rows)"
                )
            if annotations.mp3_paths[row] != mp3_path:
                raise DatasetError(
                    f"{split}.npy says row {row} is {mp3_path!r} but annotations_final.csv has "
                    f"{annotations.mp3_paths[row]!r}: the split files and the CSV do not match"
                )
            if row in seen:
                raise DatasetError(f"row {row} ({mp3_path}) is in both {seen[row]} and {split}")
            seen[row] = split
            clips.append(SplitClip(row, split, binary[row].astype(np.uint8)))
    counts = {split: sum(1 for c in clips if c.split == split) for split in ("valid", "test")}
    wrong = {s: n for s, n in counts.items() if n != WON_EXPECTED_COUNTS[s]}
    if wrong:
        detail = ", ".join(
            f"{s} has {n} (expected {WON_EXPECTED_COUNTS[s]})" for s, n in wrong.items()
        )
        if check_counts:
            raise DatasetError(
                f"the split files are not Won et al.'s: {detail}; pass --allow-other-counts "
                "if this is intended"
            )
        log.warning("split counts differ from Won et al.'s: %s", detail)
    return clips


def find_audio_root(mtat_dir: str | Path) -> Path:
    """The folder that holds `0`..`f`: `mtat_dir` itself or its `mp3/` subfolder."""
    mtat_dir = Path(mtat_dir)
    for candidate in (mtat_dir, mtat_dir / "mp3"):
        if any((candidate / folder).is_dir() for folder in MTAT_FOLDERS):
            return candidate
    raise DatasetError(
        f"no MTAT mp3 folders (0..f) in {mtat_dir} or {mtat_dir / 'mp3'}: extract mp3.zip there"
    )


def prepare_mtat(
    mtat_dir: str | Path,
    out: str | Path,
    *,
    split: SplitMethod = "won",
    won_dir: str | Path | None = None,
    annotations_path: str | Path | None = None,
    check_counts: bool = True,
    dtype: SampleDType = "int16",
    sample_rate: int = AudioConfig.sample_rate,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> PreparedDataset:
    """Decode the clips of the chosen split once into a prepared dataset at `out`.

    Raises:
        DatasetError: anything wrong with the inputs, including mp3 files listed by the split
            but absent on disk (checked before the long decoding starts).
    """
    audio_root = find_audio_root(mtat_dir)
    if annotations_path is None:
        candidates = [
            Path(mtat_dir) / "annotations_final.csv",
            audio_root / "annotations_final.csv",
        ]
        annotations_path = next((p for p in candidates if p.is_file()), candidates[0])
    annotations = read_annotations(annotations_path)
    if split == "won":
        if won_dir is None:
            raise DatasetError("the won split needs --won-split DIR with Won et al.'s .npy files")
        clips = won_split(annotations, won_dir, check_counts=check_counts)
    elif split == "folders":
        clips = folder_split(annotations)
    else:
        raise DatasetError(f"split must be 'won' or 'folders', got {split!r}")
    specs = [
        ClipSpec(
            key=annotations.mp3_paths[clip.row],
            path=audio_root / annotations.mp3_paths[clip.row],
            labels=clip.labels,
            split=clip.split,
        )
        for clip in clips
    ]
    missing = [spec.path for spec in specs if not spec.path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise DatasetError(
            f"{len(missing)} of {len(specs)} mp3 files of the split are missing (e.g. {shown}); "
            "is the archive fully extracted?"
        )
    log.info(
        "MTAT %s split: %s",
        split,
        ", ".join(
            f"{s} {sum(1 for c in clips if c.split == s)}" for s in ("train", "valid", "test")
        ),
    )
    source = {
        "dataset": "MagnaTagATune",
        "split": split,
        # File names only: the provenance travels with exported checkpoints.
        "annotations": Path(annotations_path).name,
        "split_files": "Won et al., minzwon/sota-music-tagging-models split/mtat"
        if split == "won"
        else None,
        "licence": LICENCE,
    }
    return build_dataset(
        out,
        specs,
        MTAT_TAGS,
        source=source,
        sample_rate=sample_rate,
        dtype=dtype,
        overwrite=overwrite,
        workers=workers,
        progress=progress,
    )
