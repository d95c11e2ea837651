"""Reading file tags back with mutagen's own classes, independently of app/library/filetags.py,
and the bundled default model's id, for the library tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import mutagen
from mutagen.id3 import ID3
from mutagen.mp4 import MP4

ROOT = Path(__file__).resolve().parents[3]
# The bundled default model's id: its preset and the first 12 hex digits of the file's SHA-256.
DEFAULT_WEIGHTS = ROOT / "model" / "weights" / "default.safetensors"
DEFAULT_MODEL = "q2l-small@" + hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()[:12]


def read_raw(path: Path) -> dict[str, Any]:
    """genre, mood, record (parsed) and title, read with mutagen's own classes per format."""
    if path.suffix == ".mp3":
        tags = ID3(path)
        assert tags.version == (2, 4, 0)
        record = tags.getall("TXXX:MUSIC_TAGGER")
        return {
            "genre": [str(t) for f in tags.getall("TCON") for t in f.text],
            "mood": [str(t) for f in tags.getall("TMOO") for t in f.text],
            "record": json.loads(record[0].text[0]) if record else None,
            "title": str(tags["TIT2"].text[0]),
        }
    if path.suffix == ".m4a":
        atoms = MP4(path).tags
        assert atoms is not None
        record = atoms.get("----:com.apple.iTunes:MUSIC_TAGGER")
        return {
            "genre": list(atoms.get("\xa9gen", [])),
            "mood": [bytes(v).decode() for v in atoms.get("----:com.apple.iTunes:MOOD", [])],
            "record": json.loads(bytes(record[0]).decode()) if record else None,
            "title": atoms["\xa9nam"][0],
        }
    comments = mutagen.File(path).tags  # FLAC, Ogg Vorbis, Opus: Vorbis comments
    record = comments.get("MUSIC_TAGGER")
    return {
        "genre": list(comments.get("GENRE", [])),
        "mood": list(comments.get("MOOD", [])),
        "record": json.loads(record[0]) if record else None,
        "title": comments["TITLE"][0],
    }
