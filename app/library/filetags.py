"""Genres, moods and the full scores in a file's own metadata, written with mutagen.

Where each format keeps them, following what players and MusicBrainz Picard read:

| | genre | mood | our record (JSON) |
|---|---|---|---|
| MP3 (ID3v2.4) | `TCON` | `TMOO` | `TXXX:MUSIC_TAGGER` |
| FLAC, Ogg Vorbis, Opus (Vorbis comments) | `GENRE` | `MOOD` | `MUSIC_TAGGER` |
| M4A (MP4 atoms) | `©gen` | `----:com.apple.iTunes:MOOD` | `----:com.apple.iTunes:MUSIC_TAGGER` |

Several values are several values of the format: one ID3v2.4 text frame holding null-separated
strings, repeated Vorbis comment entries, several strings in one MP4 atom. The record says which
model and settings wrote the file, every tag's score, which values this tagger added and, in
`replace` mode, which values it replaced; that is how a rerun with the same model and settings
is skipped, and how `strip` removes exactly what was written (and puts replaced values back).

Nothing is lost: a write copies the file to a hidden temporary file in the same folder, changes
the tags there, reads them back, flushes it to disk and renames it over the original in one step
(`os.replace`). A failure at any point (a full disk, a crash of the tag library, a power cut
before the rename) leaves the original as it was. Audio data is never rewritten: mutagen changes
only the tag blocks (ID3 header, FLAC metadata blocks, Ogg comment packet, MP4 `moov` metadata),
which tests/app/library checks by decoding every format before and after. A read-only file
(no write permission bit, even for root), a file another program holds an exclusive lock on
(`flock`), a file changed while it was being written, and a file whose tags cannot be read are
refused with a `FileTagError` saying so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import mutagen
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TCON, TMOO, TXXX
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4, AtomDataType, MP4FreeForm
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis

if TYPE_CHECKING:  # choosing needs torch; reading and writing tags does not
    from app.library.choice import Choice

GENRE = "genre"
MOOD = "mood"
FIELDS = (GENRE, MOOD)
RECORD_NAME = "MUSIC_TAGGER"
RECORD_VERSION = 1
SUPPORTED = "mp3, flac, ogg (vorbis), opus, m4a"
TEMP_SUFFIX = ".tagger-tmp"  # hidden (leading dot) too, so folder walks never pick one up


class FileTagError(Exception):
    """A file whose tags cannot be read or written; the message says why in plain words."""


class UnsupportedFileError(FileTagError):
    pass


# ---------------------------------------------------------------------------------------------
# One interface over the three tag formats.


class _Tags:
    """Read and set the genre and mood values and our record of one opened file."""

    def __init__(self, audio: Any) -> None:
        self.audio = audio
        if audio.tags is None:
            audio.add_tags()

    def get(self, name: str) -> tuple[str, ...]:
        raise NotImplementedError

    def set(self, name: str, values: tuple[str, ...]) -> None:
        raise NotImplementedError

    def get_record(self) -> str | None:
        raise NotImplementedError

    def set_record(self, text: str | None) -> None:
        raise NotImplementedError

    def save(self) -> None:
        self.audio.save()


class _Id3Tags(_Tags):
    _FRAMES: ClassVar[dict[str, type[Any]]] = {GENRE: TCON, MOOD: TMOO}

    @property
    def _id3(self) -> ID3:
        tags: ID3 = self.audio.tags
        return tags

    def get(self, name: str) -> tuple[str, ...]:
        frame_id = self._FRAMES[name].__name__
        return tuple(str(text) for frame in self._id3.getall(frame_id) for text in frame.text)

    def set(self, name: str, values: tuple[str, ...]) -> None:
        frame = self._FRAMES[name]
        self._id3.delall(frame.__name__)
        if values:  # encoding 3 is UTF-8; several strings are null-separated in ID3v2.4
            self._id3.add(frame(encoding=3, text=list(values)))

    def get_record(self) -> str | None:
        frames = self._id3.getall(f"TXXX:{RECORD_NAME}")
        return str(frames[0].text[0]) if frames and frames[0].text else None

    def set_record(self, text: str | None) -> None:
        self._id3.delall(f"TXXX:{RECORD_NAME}")
        if text is not None:
            self._id3.add(TXXX(encoding=3, desc=RECORD_NAME, text=[text]))

    def save(self) -> None:
        # v2.4 keeps several values in one frame; an ID3v1 tag, if any, is kept as it was.
        self.audio.save(v2_version=4)


class _VorbisTags(_Tags):
    _KEYS: ClassVar[dict[str, str]] = {GENRE: "GENRE", MOOD: "MOOD"}

    def get(self, name: str) -> tuple[str, ...]:
        return tuple(self.audio.tags.get(self._KEYS[name], []))

    def set(self, name: str, values: tuple[str, ...]) -> None:
        self._put(self._KEYS[name], list(values))

    def get_record(self) -> str | None:
        values = self.audio.tags.get(RECORD_NAME, [])
        return str(values[0]) if values else None

    def set_record(self, text: str | None) -> None:
        self._put(RECORD_NAME, [] if text is None else [text])

    def _put(self, key: str, values: list[str]) -> None:
        if values:
            self.audio.tags[key] = values
        elif key in self.audio.tags:
            del self.audio.tags[key]


class _Mp4Tags(_Tags):
    _ATOMS: ClassVar[dict[str, str]] = {GENRE: "\xa9gen", MOOD: "----:com.apple.iTunes:MOOD"}
    _RECORD_ATOM = f"----:com.apple.iTunes:{RECORD_NAME}"

    def get(self, name: str) -> tuple[str, ...]:
        return tuple(_text(value) for value in self.audio.tags.get(self._ATOMS[name], []))

    def set(self, name: str, values: tuple[str, ...]) -> None:
        atom = self._ATOMS[name]
        self._put(atom, [_freeform(v) for v in values] if atom.startswith("----") else list(values))

    def get_record(self) -> str | None:
        values = self.audio.tags.get(self._RECORD_ATOM, [])
        return _text(values[0]) if values else None

    def set_record(self, text: str | None) -> None:
        self._put(self._RECORD_ATOM, [] if text is None else [_freeform(text)])

    def _put(self, atom: str, values: list[Any]) -> None:
        if values:
            self.audio.tags[atom] = values
        elif atom in self.audio.tags:
            del self.audio.tags[atom]


def _freeform(text: str) -> MP4FreeForm:
    return MP4FreeForm(text.encode("utf-8"), dataformat=AtomDataType.UTF8)


def _text(value: Any) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _open(path: str | Path) -> _Tags:
    """The tags of `path`, its format recognised by mutagen from the content."""
    try:
        audio = mutagen.File(path)
    except mutagen.MutagenError as error:  # also wraps OSError (missing, unreadable)
        cause = error.__cause__ or error.__context__
        if isinstance(cause, OSError):
            raise FileTagError(f"cannot read the file: {cause.strerror or cause}") from error
        raise FileTagError(f"corrupt or not audio: cannot read its tags ({error})") from error
    except Exception as error:  # a hostile file tripping the parser is the file's fault
        raise FileTagError(f"corrupt: cannot read its tags ({error!r})") from error
    if audio is None:
        raise UnsupportedFileError(
            f"not an audio format this tagger writes tags into ({SUPPORTED})"
        )
    if isinstance(audio, MP3):
        return _Id3Tags(audio)
    if isinstance(audio, FLAC | OggVorbis | OggOpus):
        return _VorbisTags(audio)
    if isinstance(audio, MP4):
        return _Mp4Tags(audio)
    kind = type(audio).__name__
    raise UnsupportedFileError(
        f"{kind} files are not supported: tags are written into {SUPPORTED} files only"
    )


# ---------------------------------------------------------------------------------------------
# What a file holds, and what a write or a strip would change.


@dataclass(frozen=True)
class FileState:
    """The genre and mood values of a file and the record of a previous write, if any."""

    fields: dict[str, tuple[str, ...]]
    record: dict[str, Any] | None

    @property
    def digest(self) -> str | None:
        return None if self.record is None else str(self.record.get("digest"))

    def undone(self) -> dict[str, tuple[str, ...]]:
        """The values as they were before the recorded write: what it added taken out, what it
        replaced put back (first, where they stood)."""
        if self.record is None:
            return dict(self.fields)
        written = self.record.get("written", {})
        replaced = self.record.get("replaced", {})
        result: dict[str, tuple[str, ...]] = {}
        for name, current in self.fields.items():
            added = set(written.get(name, []))
            restored = tuple(replaced.get(name, []))
            kept = tuple(v for v in current if v not in added and v not in restored)
            result[name] = restored + kept
        return result


def read_state(path: str | Path) -> FileState:
    """What `path` holds. Raises FileTagError for a file that cannot be read, is unsupported, or
    holds a MUSIC_TAGGER field this tagger did not write."""
    tags = _open(path)
    return _state(tags)


def _state(tags: _Tags) -> FileState:
    record = None
    text = tags.get_record()
    if text is not None:
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
            raise FileTagError(
                f"it holds a {RECORD_NAME} field that this tagger did not write; left untouched"
            )
    return FileState({name: tags.get(name) for name in FIELDS}, record)


@dataclass(frozen=True)
class FieldChange:
    name: str
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """The values a file will hold after a write or a strip.

    Attributes:
        fields: Field -> its values afterwards (an empty tuple removes the field).
        record: The record's JSON afterwards, or None to remove it.
        changes: The fields whose values change, for people (--dry-run).
        model_id: The model of the write (None for a strip).
    """

    fields: dict[str, tuple[str, ...]]
    record: str | None
    changes: tuple[FieldChange, ...] = field(default=())
    model_id: str | None = None

    def describe(self) -> str:
        parts = [
            f"{change.name}: {_listed(change.before)} -> {_listed(change.after)}"
            for change in self.changes
        ]
        if self.record is not None:
            parts.append(f"{RECORD_NAME}: scores of {self.model_id}")
        else:
            parts.append(f"{RECORD_NAME} removed")
        return "; ".join(parts)


def _listed(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(values) + "]"


def _changes(
    before: dict[str, tuple[str, ...]], after: dict[str, tuple[str, ...]]
) -> tuple[FieldChange, ...]:
    return tuple(
        FieldChange(name, before[name], after[name])
        for name in FIELDS
        if before[name] != after[name]
    )


def plan_write(state: FileState, choice: Choice) -> Plan:
    """Put `choice`'s genres and moods in (after undoing an earlier write of ours), merged with
    the file's own values or replacing them, as the choice's settings say."""
    base = state.undone()
    ours = {GENRE: choice.genres, MOOD: choice.moods}
    after: dict[str, tuple[str, ...]] = {}
    written: dict[str, list[str]] = {}
    replaced: dict[str, list[str]] = {}
    for name in FIELDS:
        if choice.settings.mode == "replace":
            after[name] = ours[name]
            written[name] = list(ours[name])
            if base[name] and base[name] != ours[name]:
                replaced[name] = list(base[name])
        else:
            present = {value.casefold() for value in base[name]}
            added = tuple(v for v in ours[name] if v.casefold() not in present)
            after[name] = base[name] + added
            written[name] = list(added)
    record: dict[str, Any] = {
        "version": RECORD_VERSION,
        "model_id": choice.model_id,
        "digest": choice.digest,
        "settings": {
            "threshold": choice.settings.threshold,
            "top_k": choice.settings.top_k,
            "taxonomy": choice.settings.taxonomy,
            "mode": choice.settings.mode,
        },
        "written": {name: values for name, values in written.items() if values},
        "tags": list(choice.tags),
        "scores": choice.scores,
    }
    if replaced:
        record["replaced"] = replaced
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    return Plan(after, text, _changes(state.fields, after), choice.model_id)


def plan_strip(state: FileState) -> Plan | None:
    """Remove what the recorded write added and the record, putting replaced values back; None
    for a file this tagger never wrote."""
    if state.record is None:
        return None
    after = state.undone()
    return Plan(after, None, _changes(state.fields, after))


# ---------------------------------------------------------------------------------------------
# Atomic writing.


def apply(path: str | Path, plan: Plan) -> None:
    """Write `plan` into `path` atomically (module docstring); raises FileTagError."""
    real = Path(os.path.realpath(path))  # a symbolic link stays a link to the written file
    try:
        _apply(real, plan)
    except FileTagError:
        raise
    except OSError as error:
        raise FileTagError(f"cannot write it: {error.strerror or error}") from error
    except mutagen.MutagenError as error:
        raise FileTagError(f"cannot write its tags: {error}") from error


def check_writable(path: str | Path) -> None:
    """Refuse a file without its owner's write permission bit, even for root: read-only is how
    people protect files, and a tagger running as root must respect it too."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise FileTagError(f"cannot read the file: {error.strerror or error}") from error
    if not mode & stat.S_IWUSR:
        raise FileTagError("the file is read-only (no write permission); left untouched")


def _apply(real: Path, plan: Plan) -> None:
    check_writable(real)
    before = real.stat()
    with (
        open(real, "rb") as original,
        _exclusive(original),
        _temporary_copy(real, original) as temp,
    ):
        tags = _open(temp)
        for name in FIELDS:
            tags.set(name, plan.fields[name])
        tags.set_record(plan.record)
        _save(tags)
        _check(temp, plan)
        _fsync(temp)
        now = real.stat()
        if (now.st_mtime_ns, now.st_size, now.st_ino) != (
            before.st_mtime_ns,
            before.st_size,
            before.st_ino,
        ):
            raise FileTagError("the file changed while its tags were being written; left as is")
        os.replace(temp, real)
    _fsync_folder(real.parent)


def _save(tags: _Tags) -> None:
    """The one call that writes tags (tests inject failures here)."""
    tags.save()


def _check(temp: Path, plan: Plan) -> None:
    """Read the written tags back before they replace the original."""
    state = _open(temp)
    if any(state.get(name) != plan.fields[name] for name in FIELDS) or (
        state.get_record() != plan.record
    ):
        raise FileTagError("the tags read back differ from the tags written; left untouched")


@contextlib.contextmanager
def _exclusive(handle: Any) -> Iterator[None]:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        raise FileTagError("the file is locked by another program; left untouched") from error
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _temporary_copy(real: Path, original: Any) -> Iterator[Path]:
    """A copy of the open `original` beside it, with its permissions; removed unless renamed."""
    descriptor, name = tempfile.mkstemp(
        prefix=f".{real.name}.", suffix=TEMP_SUFFIX, dir=real.parent
    )
    temp = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as out:
            shutil.copyfileobj(original, out, 1 << 20)
        shutil.copymode(real, temp)
        _keep_owner(real, temp)
        yield temp
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _keep_owner(real: Path, temp: Path) -> None:
    """Give the copy the original's owner where we may (root writing a user's files)."""
    source, copy = real.stat(), temp.stat()
    if (source.st_uid, source.st_gid) != (copy.st_uid, copy.st_gid):
        with contextlib.suppress(PermissionError):
            os.chown(temp, source.st_uid, source.st_gid)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_tags(path: str | Path, choice: Choice, *, dry_run: bool = False) -> Plan:
    """Read, plan and (unless `dry_run`) write `choice` into `path`; returns the plan."""
    plan = plan_write(read_state(path), choice)
    if not dry_run:
        apply(path, plan)
    return plan


def strip_tags(path: str | Path, *, dry_run: bool = False) -> Plan | None:
    """Remove what this tagger wrote into `path`; None when it wrote nothing there."""
    plan = plan_strip(read_state(path))
    if plan is not None and not dry_run:
        apply(path, plan)
    return plan
