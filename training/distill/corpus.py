"""The default model's corpus: real music fetched from Debian plus rendered MIDI, with splits.

Splits hold out whole packages (real music) and whole pieces (renders), so no track or piece is
split across sets. The held-out packages span the styles of the corpus: electronic, techno, rock
and metal, fast celtic and piano pieces; since v2 also 0 A.D.'s orchestral and world-music
score and performous' recorded choir (test), and UFO: AI's soundtrack (validation).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VALID_PACKAGES = frozenset(
    {"xmoto-data", "extremetuxracer-data", "asc-music", "redeclipse-data", "ufoai-music"}
)
TEST_PACKAGES = frozenset(
    {
        "singularity-music",
        "freedroidrpg-data",
        "fretsonfire-songs-sectoid",
        "supertuxkart-data",
        "0ad-data",
        "performous",
    }
)


@dataclass(frozen=True)
class Source:
    """One audio file of the corpus.

    Attributes:
        source_id: Stable short id (hash of kind and path).
        kind: "music" (Debian packages) or "render" (rendered MIDI).
        path: Audio file.
        group: Package (music) or corpus piece (render): the unit that is never split.
        split: "train", "valid" or "test".
        labels: Ground-truth tag values (tag id -> 0/1, ids like "mtt/piano"): a render's
            instruments and voices, a recorded voice's vocal tags; empty for other music.
        licence: As recorded by the fetch or render step.
        active: For renders, positive tag id -> [start, end] seconds where it sounds.
    """

    source_id: str
    kind: str
    path: Path
    group: str
    split: str
    labels: dict[str, int]
    licence: str
    active: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "kind": self.kind,
            "path": str(self.path),
            "group": self.group,
            "split": self.split,
            "labels": self.labels,
            "licence": self.licence,
        }


def package_split(package: str) -> str:
    if package in VALID_PACKAGES:
        return "valid"
    if package in TEST_PACKAGES:
        return "test"
    return "train"


def _source_id(kind: str, path: str) -> str:
    return hashlib.sha1(f"{kind}:{path}".encode()).hexdigest()[:12]


def qualified(tag: str) -> str:
    """A label key as a two-vocabulary id: manifests from before v2 name MTT tags bare."""
    return tag if "/" in tag else f"mtt/{tag}"


# What a fetched recording of voices is known to be, whatever else plays: the fetch step marks
# such tracks with `content` ("voice": sung or spoken solo voice; "choir": a choir).
_VOICE = {"mtt/vocal": 1, "mtt/vocals": 1, "mtt/voice": 1, "mtt/singing": 1}
_NO_VOICE_TAGS = ("mtt/no vocal", "mtt/no vocals", "mtt/no voice", "msd/instrumental")
CONTENT_LABELS: dict[str, dict[str, int]] = {
    "voice": {**_VOICE, **dict.fromkeys(_NO_VOICE_TAGS, 0)},
    "choir": {
        **_VOICE,
        "mtt/choir": 1,
        "mtt/choral": 1,
        **dict.fromkeys(_NO_VOICE_TAGS, 0),
    },
}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def music_sources(music_dir: Path) -> list[Source]:
    """Tracks listed in `music_dir/manifest.jsonl` (written by `python -m training fetch-music`)."""
    manifest = music_dir / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run `python -m training fetch-music` first")
    return [
        Source(
            source_id=_source_id("music", row["local_path"]),
            kind="music",
            path=music_dir / row["local_path"],
            group=row["package"],
            split=package_split(row["package"]),
            labels=dict(CONTENT_LABELS.get(str(row.get("content")), {})),
            licence=str(row.get("licence", "unknown")),
        )
        for row in _read_jsonl(manifest)
    ]


def render_sources(render_dir: Path) -> list[Source]:
    """Renders listed in `render_dir/manifest.jsonl` (written by `python -m training render`)."""
    manifest = render_dir / "manifest.jsonl"
    if not manifest.is_file():
        return []
    from training.distill.render import split_of

    return [
        Source(
            source_id=_source_id("render", row["path"]),
            kind="render",
            path=render_dir / row["path"],
            group=row["piece"],
            split=row.get("split") or split_of(row["piece"]),
            labels={qualified(str(k)): int(v) for k, v in row["labels"].items()},
            licence=str(row.get("licence", "public domain (music21 corpus)")),
            active={
                qualified(str(tag)): [(float(a), float(b)) for a, b in spans]
                for tag, spans in (row.get("active") or {}).items()
            },
        )
        for row in _read_jsonl(manifest)
    ]
