"""Own data: a manifest of audio files with tags, plus the vocabulary they are drawn from.

This is how a catalog owner trains on their own music.

Manifest, CSV (header required; tags separated by ";"; `split` optional):

    path,tags,split
    audio/track01.mp3,rock;guitar;male vocal,train
    audio/track02.flac,piano;classical,

or JSON Lines, one object per line: `{"path": "...", "tags": ["rock", "guitar"], "split": "test"}`.
Relative paths are resolved against the manifest's folder. Rows without a split are assigned
one deterministically from a hash of their path (so adding rows never moves old ones); give
whole albums or artists the same explicit split to keep them on one side.

Vocabulary: a `.txt` file with one tag per line (`#` starts a comment), or a `.json` list of
names or of `{"name", "category", "synonym_group"}` objects. Its order is the model's output
order.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.config import AudioConfig
from model.tags import Tag, custom_vocabulary
from training.data.decode import ClipSpec, build_dataset
from training.data.store import SPLITS, DatasetError, PreparedDataset, SampleDType

log = logging.getLogger(__name__)

_SPLIT_ALIASES = {"val": "valid", "validation": "valid", "dev": "valid"}
_MAX_LISTED = 10


class ManifestError(DatasetError):
    """A manifest or vocabulary that cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class ManifestEntry:
    """One row: the resolved audio path, its tags, its split (None: assign automatically)."""

    path: Path
    key: str
    tags: tuple[str, ...]
    split: str | None
    line: int


def read_vocabulary(path: str | Path) -> tuple[Tag, ...]:
    """Tags from a `.txt` or `.json` vocabulary file, in file order.

    Raises:
        ManifestError: unreadable, empty, duplicated names or malformed entries.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(f"cannot read vocabulary {path}: {error.strerror}") from error
    try:
        if path.suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise ManifestError(f"vocabulary {path} must be a JSON list")
            if all(isinstance(item, str) for item in data):
                tags = custom_vocabulary([str(item) for item in data])
            else:
                tags = tuple(Tag.from_dict(item) for item in data)
        else:
            names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
            tags = custom_vocabulary([name for name in names if name])
    except json.JSONDecodeError as error:
        raise ManifestError(f"vocabulary {path} is not valid JSON: {error}") from error
    except ValueError as error:  # duplicated names, bad categories
        raise ManifestError(f"vocabulary {path}: {error}") from error
    if not tags:
        raise ManifestError(f"vocabulary {path} holds no tags")
    if len({tag.name for tag in tags}) != len(tags):
        raise ManifestError(f"vocabulary {path}: tag names must be unique")
    return tags


def _split_tags(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(";") if t.strip())
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(t.strip() for t in value if t.strip())
    raise ManifestError(f"{where}: tags must be a list of strings or a ';'-separated string")


def _raw_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if path.suffix not in (".csv", ".jsonl", ".ndjson"):
        raise ManifestError(f"manifest {path} must be a .csv or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(f"cannot read manifest {path}: {error.strerror}") from error
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix in (".jsonl", ".ndjson"):
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ManifestError(f"{path}:{line_no}: not valid JSON: {error.msg}") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{path}:{line_no}: each line must be a JSON object")
            rows.append((line_no, row))
    else:
        reader = csv.DictReader(text.splitlines())
        fields = set(reader.fieldnames or ())
        if not {"path", "tags"} <= fields:
            raise ManifestError(
                f"{path}: the CSV header must name the columns path and tags (and optionally "
                f"split); found {', '.join(sorted(fields)) or 'no header'}"
            )
        rows = [(line_no, dict(row)) for line_no, row in enumerate(reader, start=2)]
    if not rows:
        raise ManifestError(f"manifest {path} has no rows")
    return rows


def _listing(problems: list[str]) -> str:
    shown = "; ".join(problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    return shown + (f"; and {more} more" if more > 0 else "")


def read_manifest(path: str | Path, vocabulary: Sequence[Tag]) -> list[ManifestEntry]:
    """Parse and check a manifest against its vocabulary.

    Raises:
        ManifestError: listing every unknown tag (with close matches), every missing audio
            file, malformed rows, unknown split names and duplicated paths.
    """
    path = Path(path)
    known = [tag.name for tag in vocabulary]
    known_set = set(known)
    entries: list[ManifestEntry] = []
    unknown: list[str] = []
    missing: list[str] = []
    malformed: list[str] = []
    seen: dict[Path, int] = {}
    for line_no, row in _raw_rows(path):
        where = f"{path.name}:{line_no}"
        audio = row.get("path")
        if not isinstance(audio, str) or not audio.strip():
            malformed.append(f"{where}: no audio path")
            continue
        try:
            tags = _split_tags(row.get("tags") or [], where)
        except ManifestError as error:
            malformed.append(str(error))
            continue
        split = row.get("split") or None
        if split is not None:
            split = _SPLIT_ALIASES.get(str(split).strip().lower(), str(split).strip().lower())
            if split not in SPLITS:
                malformed.append(f"{where}: split {row.get('split')!r} is not train, valid or test")
                continue
        for tag in tags:
            if tag not in known_set:
                close = difflib.get_close_matches(tag, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                unknown.append(f"{where}: {tag!r}{hint}")
        resolved = (path.parent / audio.strip()).resolve()
        if resolved in seen:
            malformed.append(f"{where}: {audio!r} is already listed on line {seen[resolved]}")
            continue
        seen[resolved] = line_no
        if not resolved.is_file():
            missing.append(f"{where}: {audio}")
        entries.append(ManifestEntry(resolved, audio.strip(), tags, split, line_no))
    problems = []
    if malformed:
        problems.append(f"{len(malformed)} malformed rows: {_listing(malformed)}")
    if unknown:
        problems.append(
            f"{len(unknown)} tags not in the vocabulary: {_listing(unknown)} "
            "(add them to the vocabulary file or fix the spelling)"
        )
    if missing:
        problems.append(
            f"{len(missing)} audio files not found: {_listing(missing)} "
            f"(relative paths are resolved against {path.parent.resolve()})"
        )
    if problems:
        raise ManifestError(f"manifest {path}: " + ". ".join(problems))
    return entries


def assign_splits(
    entries: Sequence[ManifestEntry],
    *,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> list[str]:
    """Each entry's split: its own, or one drawn from a hash of (seed, path as written)."""
    if valid_fraction < 0 or test_fraction < 0 or valid_fraction + test_fraction >= 1:
        raise ManifestError("need valid_fraction, test_fraction >= 0 with a sum below 1")
    splits = []
    for entry in entries:
        if entry.split is not None:
            splits.append(entry.split)
            continue
        digest = hashlib.sha256(f"{seed}:{entry.key}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        if u < test_fraction:
            splits.append("test")
        elif u < test_fraction + valid_fraction:
            splits.append("valid")
        else:
            splits.append("train")
    counts = {split: splits.count(split) for split in SPLITS}
    for split in ("train", "valid"):
        if counts[split] == 0:
            raise ManifestError(
                f"the {split} split is empty ({counts['train']} train, {counts['valid']} valid, "
                f"{counts['test']} test): mark some rows split={split} in the manifest or "
                "change --valid-fraction/--test-fraction"
            )
    if counts["test"] == 0:
        log.warning("the test split is empty: final test metrics will be skipped")
    return splits


def prepare_manifest(
    manifest: str | Path,
    vocabulary: str | Path,
    out: str | Path,
    *,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    dtype: SampleDType = "int16",
    sample_rate: int = AudioConfig.sample_rate,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> PreparedDataset:
    """Check the manifest, then decode every file once into a prepared dataset at `out`."""
    tags = read_vocabulary(vocabulary)
    entries = read_manifest(manifest, tags)
    splits = assign_splits(
        entries, valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed
    )
    column = {tag.name: i for i, tag in enumerate(tags)}
    specs = []
    for entry, split in zip(entries, splits, strict=True):
        labels = np.zeros(len(tags), dtype=np.uint8)
        labels[[column[name] for name in entry.tags]] = 1
        specs.append(ClipSpec(key=entry.key, path=entry.path, labels=labels, split=split))
    train_positives = np.stack([s.labels for s in specs if s.split == "train"]).sum(axis=0)
    never = [tags[i].name for i in np.flatnonzero(train_positives == 0)]
    if never:
        log.warning("tags with no positive training example: %s", ", ".join(never))
    source = {
        "dataset": "manifest",
        # File names only: the provenance travels with exported checkpoints.
        "manifest": Path(manifest).name,
        "vocabulary": Path(vocabulary).name,
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
        "split_seed": seed,
    }
    return build_dataset(
        out,
        specs,
        tags,
        source=source,
        sample_rate=sample_rate,
        dtype=dtype,
        overwrite=overwrite,
        workers=workers,
        progress=progress,
    )
