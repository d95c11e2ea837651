"""Examples as users already keep them, read into one list of labelled tracks.

Sources (any mix; a file named twice is one track with the union of its labels):

- a folder per tag: `EXAMPLES/jazz/*.mp3`, `EXAMPLES/ambient/**` (files in subfolders count);
  `EXAMPLES/negatives/` holds explicit negatives for every tag, `EXAMPLES/not-jazz/` explicit
  negatives for one tag.
- a CSV of `file,tags[,group]` (a header row naming `file` is skipped): `tags` separated by
  `;`, `!jazz` an explicit negative for jazz, `-` a negative for every tag; relative paths are
  relative to the CSV. With `--db`, `#ID` names a catalogue track by its id.
- drawn negatives: tracks picked at random from a catalogue (`--db`) or a folder, never one
  that is an example already; they are negatives for every tag.

Which tracks are negatives for a tag (`Example.label`): its explicit and drawn negatives, and
(unless turned off) the positives of the other tags: in a folder per tag a track usually sits in
one folder. A track is never a negative for a tag it is a positive of.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.pipeline.audio_input import AUDIO_SUFFIXES

NEGATIVES_FOLDER = "negatives"
NOT_PREFIX = "not-"


class ExampleError(ValueError):
    """Examples that cannot be taught from; the message lists what is wrong."""


@dataclass(frozen=True)
class Example:
    """One track and what it teaches.

    Attributes:
        path: The audio file.
        positive: Tags it is an example of.
        negative: Tags it is an explicit negative of.
        negative_for_all: A negative of every tag it is no positive of (negatives folder, `-`,
            drawn).
        group: Tracks of one group (album, artist) stay on one side of every split; None groups
            the track alone.
        source: Where it came from (folder, csv, db, drawn), for the report.
    """

    path: str
    positive: frozenset[str] = frozenset()
    negative: frozenset[str] = frozenset()
    negative_for_all: bool = False
    group: str | None = None
    source: str = "folder"

    def label(self, tag: str, others_are_negatives: bool) -> int | None:
        """1 positive, 0 negative, None: says nothing about `tag`."""
        if tag in self.positive:
            return 1
        if tag in self.negative or self.negative_for_all:
            return 0
        if others_are_negatives and self.positive:
            return 0
        return None

    def to_record(self, sha256: str) -> dict[str, object]:
        return {
            "path": self.path,
            "sha256": sha256,
            "positive": sorted(self.positive),
            "negative": sorted(self.negative) + (["*"] if self.negative_for_all else []),
            "group": self.group,
            "source": self.source,
        }

    @classmethod
    def from_record(cls, record: dict[str, object]) -> Example:
        negative = [str(t) for t in record.get("negative") or []]  # type: ignore[attr-defined]
        return cls(
            path=str(record["path"]),
            positive=frozenset(str(t) for t in record.get("positive") or []),  # type: ignore[attr-defined]
            negative=frozenset(t for t in negative if t != "*"),
            negative_for_all="*" in negative,
            group=None if record.get("group") is None else str(record["group"]),
            source=str(record.get("source") or "recorded"),
        )


@dataclass
class ExampleSet:
    """The tracks of a teaching run and the tags they teach, in first-seen order."""

    examples: list[Example] = field(default_factory=list)

    @property
    def tags(self) -> list[str]:
        seen: dict[str, None] = {}
        for example in self.examples:
            for tag in sorted(example.positive):
                seen.setdefault(tag, None)
        return list(seen)

    def add(self, example: Example) -> None:
        key = str(Path(example.path).resolve()) if not example.path.startswith("#") else ""
        for i, known in enumerate(self.examples):
            if key and str(Path(known.path).resolve()) == key:
                self.examples[i] = Example(
                    path=known.path,
                    positive=known.positive | example.positive,
                    negative=known.negative | example.negative,
                    negative_for_all=known.negative_for_all or example.negative_for_all,
                    group=known.group or example.group,
                    source=known.source,
                )
                return
        self.examples.append(example)

    def extend(self, examples: Iterable[Example]) -> None:
        for example in examples:
            self.add(example)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_SUFFIXES
    )


def from_folder(root: Path) -> list[Example]:
    """A folder holding one subfolder per tag (and `negatives/`, `not-TAG/`)."""
    if not root.is_dir():
        raise ExampleError(f"{root}: not a folder")
    examples: list[Example] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _audio_files(sub)
        for file in files:
            if sub.name == NEGATIVES_FOLDER:
                examples.append(Example(str(file), negative_for_all=True))
            elif sub.name.startswith(NOT_PREFIX):
                examples.append(Example(str(file), negative=frozenset({sub.name[4:]})))
            else:
                examples.append(Example(str(file), positive=frozenset({sub.name})))
    if not examples:
        raise ExampleError(
            f"{root}: no audio files in subfolders; lay examples out as {root}/TAG/FILE"
        )
    return examples


def from_csv(path: Path, catalogue_paths: dict[int, str] | None = None) -> list[Example]:
    """Rows of `file,tags[,group]`; see the module docstring."""
    if not path.is_file():
        raise ExampleError(f"{path}: no such CSV file")
    problems: list[str] = []
    examples: list[Example] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("//"):
                continue
            if number == 1 and row[0].strip().lower() in ("file", "path"):
                continue
            if len(row) < 2 or len(row) > 3:
                problems.append(f"line {number}: expected file,tags[,group], got {len(row)} fields")
                continue
            file = row[0].strip()
            if file.startswith("#"):
                if catalogue_paths is None:
                    problems.append(f"line {number}: {file} names a catalogue track: pass --db")
                    continue
                try:
                    file = catalogue_paths[int(file[1:])]
                except (ValueError, KeyError):
                    problems.append(f"line {number}: no track {file} in the catalogue")
                    continue
            elif not Path(file).is_absolute():
                file = str(path.parent / file)
            labels = [t.strip() for t in row[1].split(";") if t.strip()]
            if not labels:
                problems.append(f"line {number}: no tags (use - for a negative of every tag)")
                continue
            group = row[2].strip() if len(row) == 3 and row[2].strip() else None
            examples.append(
                Example(
                    path=file,
                    positive=frozenset(t for t in labels if not t.startswith(("!", "-"))),
                    negative=frozenset(t[1:] for t in labels if t.startswith("!") and t[1:]),
                    negative_for_all="-" in labels,
                    group=group,
                    source="db" if row[0].strip().startswith("#") else "csv",
                )
            )
    if problems:
        raise ExampleError(f"{path}: " + "; ".join(problems))
    return examples


def draw_negatives(
    pool: Sequence[str], count: int, taken: Iterable[str], seed: int = 0
) -> list[Example]:
    """`count` random files of `pool` that are no example yet, as negatives of every tag."""
    excluded = {str(Path(p).resolve()) for p in taken}
    candidates = [p for p in pool if str(Path(p).resolve()) not in excluded]
    chosen = random.Random(seed).sample(candidates, min(count, len(candidates)))
    return [Example(path, negative_for_all=True, source="drawn") for path in sorted(chosen)]


def folder_pool(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise ExampleError(f"{folder}: not a folder")
    return [str(p) for p in _audio_files(folder)]
