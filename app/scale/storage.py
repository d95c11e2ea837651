"""Where a Ray job reads and writes: local paths or object-store URIs, through PyArrow's
filesystems (`s3://`, `gs://`, `abfs://`, `hdfs://`, `file://`, plain paths), the ones Ray Data
reads and writes with.

A record names its file as the job found it: an absolute path on a local disk (every node must
see the same path, e.g. a shared mount), the full URI on an object store. A rerun lists the
same names, which is how it knows what DEST already holds.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow.dataset as pads
import pyarrow.fs as pafs

from app.pipeline.audio_input import AUDIO_SUFFIXES

OUTPUT_SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl"}


class StorageError(Exception):
    """SOURCE or DEST cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Location:
    """A place on a filesystem.

    Attributes:
        filesystem: The PyArrow filesystem (local, S3, GCS, ...).
        path: The path inside it, as Ray's readers and writers take it.
        scheme: "s3://" and so on, or "" for the local disk: scheme + path names a file.
    """

    filesystem: pafs.FileSystem
    path: str
    scheme: str

    @property
    def uri(self) -> str:
        return self.scheme + self.path


def locate(where: str) -> Location:
    """The filesystem and path of a local path or a URI.

    Raises:
        StorageError: an unknown scheme, or a filesystem PyArrow cannot open (e.g. credentials).
    """
    if "://" not in where:
        where = os.path.abspath(os.path.expanduser(where))
    try:
        filesystem, path = pafs.FileSystem.from_uri(where)
    except (ValueError, OSError) as error:  # ArrowInvalid is a ValueError
        raise StorageError(f"cannot open {where}: {error}") from error
    local = isinstance(filesystem, pafs.LocalFileSystem)
    scheme = "" if local else where.split("://", 1)[0] + "://"
    return Location(filesystem, path.rstrip("/") or "/", scheme)


@dataclass(frozen=True)
class Listing:
    """The audio files under SOURCE, sorted, and how many other files were passed over."""

    paths: list[str]
    ignored: int


def _is_audio(path: str) -> bool:
    name = posixpath.basename(path)
    return not name.startswith(".") and posixpath.splitext(name)[1].lower() in AUDIO_SUFFIXES


def list_audio(source: Location, *, recursive: bool) -> Listing:
    """Files to tag: SOURCE itself when it is a file, else the audio files in it (by name, as
    `tagger tag` picks them in folders; hidden files and folders are left out).

    Raises:
        StorageError: SOURCE does not exist or cannot be listed.
    """
    try:
        info = source.filesystem.get_file_info(source.path)
        if info.type == pafs.FileType.File:
            return Listing([source.path], 0)
        if info.type != pafs.FileType.Directory:
            raise StorageError(f"{source.uri}: no such file or folder")
        selector = pafs.FileSelector(source.path, recursive=recursive)
        found = source.filesystem.get_file_info(selector)
    except OSError as error:
        raise StorageError(f"cannot list {source.uri}: {error}") from error
    files = [f.path for f in found if f.type == pafs.FileType.File and not _hidden(f.path, source)]
    audio = sorted(f for f in files if _is_audio(f))
    return Listing(audio, len(files) - len(audio))


def _hidden(path: str, source: Location) -> bool:
    inside = posixpath.relpath(path, source.path)
    return any(part.startswith(".") for part in inside.split("/")[:-1])


@dataclass(frozen=True)
class Outcome:
    """One record of DEST, reduced to what resuming and the summary need."""

    file: str
    error: str | None
    duration_seconds: float


def read_outcomes(dest: Location, fmt: str) -> list[Outcome]:
    """Every record in DEST (all earlier runs); an absent DEST holds none.

    Raises:
        StorageError: DEST is a file, or holds files of this format that are not readable.
    """
    try:
        info = dest.filesystem.get_file_info(dest.path)
        if info.type == pafs.FileType.NotFound:
            return []
        if info.type != pafs.FileType.Directory:
            raise StorageError(f"{dest.uri} is a file; DEST must be a folder (or a new name)")
        selector = pafs.FileSelector(dest.path, recursive=False)
        suffix = OUTPUT_SUFFIX[fmt]
        files = sorted(
            f.path for f in dest.filesystem.get_file_info(selector) if f.path.endswith(suffix)
        )
        if fmt == "parquet":
            return _parquet_outcomes(dest, files)
        return list(_jsonl_outcomes(dest, files))
    except (OSError, ValueError) as error:
        raise StorageError(f"cannot read {dest.uri} to resume: {error}") from error


def _parquet_outcomes(dest: Location, files: list[str]) -> list[Outcome]:
    if not files:
        return []
    dataset = pads.dataset(files, filesystem=dest.filesystem, format="parquet")
    table = dataset.to_table(columns=["file", "error", "duration_seconds"])
    return [
        Outcome(row["file"], row["error"], row["duration_seconds"] or 0.0)
        for row in table.to_pylist()
    ]


def _jsonl_outcomes(dest: Location, files: Iterable[str]) -> Iterable[Outcome]:
    for path in files:
        with dest.filesystem.open_input_stream(path) as stream:
            text = stream.read().decode("utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path} line {number} is not JSON; not tagger output?") from None
            yield Outcome(
                str(record["file"]), record.get("error"), record.get("duration_seconds") or 0.0
            )


def done_files(outcomes: Iterable[Outcome]) -> set[str]:
    """Files with a successful record; failed files are tried again, as `tagger tag --resume`."""
    return {o.file for o in outcomes if o.error is None}
