"""What `tagger tag` writes: a table, JSON, JSON Lines or CSV, and reading it back to resume.

Records use the service's field names (`tag`, `score`, `category`, `synonym_group`,
`threshold`, `passes_threshold`; segments with `start`, `end`, `scores`; `embedding` with
--embedding), plus `file`, and `error` for a file that could not be tagged. JSON Lines and CSV
are written and flushed file by file, so an interrupted run keeps everything finished so far and
`--resume` appends to it; JSON is one document, rewritten whole at the end (also when
interrupted).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from torch import Tensor
from tqdm import tqdm

from app.pipeline.describe import format_name
from app.pipeline.records import DIGITS as DIGITS  # re-exported: moved there from here
from app.pipeline.records import Describer as Describer
from app.pipeline.records import FileResult as FileResult
from app.pipeline.records import rounded as _rounded

Format = Literal["table", "json", "jsonl", "csv"]
FORMATS: tuple[Format, ...] = ("table", "json", "jsonl", "csv")
RESUMABLE: tuple[Format, ...] = ("json", "jsonl", "csv")


class OutputError(Exception):
    """The output file cannot be used (unreadable for --resume, or written by something else)."""


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:04.1f}"
    return f"{minutes}:{secs:04.1f}"


class Writer(Protocol):
    def write(self, result: FileResult) -> None: ...

    def close(self) -> None: ...


class TextSink(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class _Console:
    """Standard output for results while the progress bar draws on standard error: each write
    lifts the bar out of the way first, so a terminal never shows a row and the bar mixed."""

    def write(self, text: str, /) -> int:
        tqdm.write(text, file=sys.stdout, end="")
        return len(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def close(self) -> None:
        self.flush()


def _open(path: Path | None, *, append: bool) -> TextSink:
    if path is None:
        return _Console()
    path.parent.mkdir(parents=True, exist_ok=True)
    # newline="" so the csv module's own \r\n line ends are written unchanged.
    return path.open("a" if append else "w", encoding="utf-8", newline="")


class TableWriter:
    """A text table for people: one row per file, and one indented row per window with
    --segments. Rows are printed as files finish."""

    def __init__(self, describer: Describer, path: Path | None, files: Sequence[str]) -> None:
        self.describer = describer
        self.stream = _open(path, append=False)
        self.owned = path is not None
        self.width = min(max([len("file"), *(len(f) for f in files)]), 60)
        self.stream.write(f"{'file':<{self.width}}  {'duration':>8}  top tags\n")
        self.stream.flush()

    def _tags(self, scores: Tensor) -> str:
        return "  ".join(f"{t['tag']} {t['score']:.2f}" for t in self.describer.top_tags(scores))

    def write(self, result: FileResult) -> None:
        file = f"{result.path:<{self.width}}"
        if not result.ok or result.track_scores is None or result.window_scores is None:
            self.stream.write(f"{file}  {'-':>8}  error: {result.error}\n")
        else:
            duration = _clock(result.duration_seconds)
            extra = ""
            if self.describer.embedding is not None and result.embedding is not None:
                head = " ".join(f"{v:.3f}" for v in result.embedding[:3].tolist())
                extra = f"  embedding {result.embedding.shape[0]}-d [{head} ...]"
            line = f"{file}  {duration:>8}  {self._tags(result.track_scores)}{extra}"
            self.stream.write(line + "\n")
            if self.describer.segments:
                for (start, end), row in zip(
                    result.window_times, result.window_scores, strict=True
                ):
                    span = f"{_clock(start)}-{_clock(end)}"
                    self.stream.write(f"  {span:>{self.width + 8}}  {self._tags(row)}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.owned:
            self.stream.close()


class JsonLinesWriter:
    """One JSON object per line, flushed per file."""

    def __init__(self, describer: Describer, path: Path | None, *, append: bool) -> None:
        self.describer = describer
        self.stream = _open(path, append=append)
        self.owned = path is not None

    def write(self, result: FileResult) -> None:
        self.stream.write(json.dumps(self.describer.record(result)) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.owned:
            self.stream.close()


class JsonWriter:
    """One document, `{"model_id": ..., "files": [records]}`, written when the run ends.

    With --resume, the records of the previous document are kept, except those of the files this
    run tags again (files that had failed).
    """

    def __init__(
        self, describer: Describer, path: Path | None, previous: Sequence[dict[str, Any]] = ()
    ) -> None:
        self.describer = describer
        self.path = path
        self.previous = list(previous)
        self.records: list[dict[str, Any]] = []
        # The document is written next to its destination and renamed over it at the end, so a
        # crash never leaves half a document. Opened now: an unwritable place fails at the start,
        # not after hours of tagging.
        self.partial = None if path is None else path.with_name(path.name + ".partial")
        self.stream = None if self.partial is None else _open(self.partial, append=False)

    def write(self, result: FileResult) -> None:
        self.records.append(self.describer.record(result))

    def close(self) -> None:
        again = {_key(r["file"]) for r in self.records}
        kept = [r for r in self.previous if _key(r["file"]) not in again]
        document = {"model_id": self.describer.model_id, "files": kept + self.records}
        text = json.dumps(document, indent=2) + "\n"
        if self.stream is None or self.partial is None or self.path is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        self.stream.write(text)
        self.stream.close()
        os.replace(self.partial, self.path)


class CsvWriter:
    """One row per file: its metadata, its top tags joined by ";", then one score column per tag
    of the vocabulary. With --segments, each window adds a row with `start` and `end` set."""

    def __init__(self, describer: Describer, path: Path | None, *, append: bool) -> None:
        self.describer = describer
        self.stream = _open(path, append=append)
        self.owned = path is not None
        self.writer = csv.writer(self.stream)
        if not append:
            header = csv_header(describer.tag_names)
            self.writer.writerow(header + (["embedding"] if describer.embedding else []))
            self.stream.flush()

    def _row(
        self,
        result: FileResult,
        scores: Tensor,
        span: tuple[float, float] | None,
        embedding: Tensor | None = None,
    ) -> list[Any]:
        assert result.window_scores is not None
        top = ";".join(self.describer.top_ids(scores))
        return [
            result.path,
            self.describer.model_id,
            round(result.duration_seconds, 3),
            int(result.window_scores.shape[0]),
            format_name(result.container),
            "" if span is None else round(span[0], 3),
            "" if span is None else round(span[1], 3),
            top,
            "",
            *(round(s, DIGITS) for s in self.describer.selected_scores(scores)),
            *self._embedding(embedding),
        ]

    def _embedding(self, vector: Tensor | None) -> list[str]:
        """The embedding column (with --embedding): the values, separated by spaces."""
        if self.describer.embedding is None:
            return []
        return ["" if vector is None else " ".join(str(v) for v in _rounded(vector))]

    def write(self, result: FileResult) -> None:
        if not result.ok or result.track_scores is None or result.window_scores is None:
            empty = [""] * len(self.describer.tag_names)
            row = [result.path, self.describer.model_id, "", "", "", "", "", "", result.error]
            self.writer.writerow(row + empty + self._embedding(None))
        else:
            self.writer.writerow(self._row(result, result.track_scores, None, result.embedding))
            if self.describer.segments:
                windows = result.window_embeddings
                vectors = [None] * len(result.window_times) if windows is None else list(windows)
                for span, row_scores, vector in zip(
                    result.window_times, result.window_scores, vectors, strict=True
                ):
                    self.writer.writerow(self._row(result, row_scores, span, vector))
        self.stream.flush()

    def close(self) -> None:
        if self.owned:
            self.stream.close()


CSV_FIELDS = (
    "file",
    "model_id",
    "duration_seconds",
    "windows",
    "format",
    "start",
    "end",
    "top_tags",
    "error",
)


def csv_header(tag_names: Sequence[str]) -> list[str]:
    return [*CSV_FIELDS, *tag_names]


# ----- resuming ------------------------------------------------------------------------------


def _key(path: str) -> str:
    """Files are matched by absolute path, so `a.mp3` and `./a.mp3` are the same file."""
    return os.path.abspath(path)


@dataclass(frozen=True)
class Previous:
    """What an earlier run left in the output file.

    Attributes:
        done: Keys (absolute paths) of files tagged successfully; failed files are retried.
        model_ids: Models that wrote the records.
        records: The records of a JSON document (kept when it is rewritten).
    """

    done: frozenset[str]
    model_ids: frozenset[str]
    records: list[dict[str, Any]]

    def is_done(self, path: str) -> bool:
        return _key(path) in self.done


def _drop_partial_line(path: Path) -> None:
    """Cut a last line that an interrupted run left without its newline: it is incomplete."""
    with path.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def read_previous(
    path: Path, fmt: Format, tag_names: Sequence[str], *, embedding: bool = False
) -> Previous:
    """Read an existing output file for --resume; an absent file means a fresh start.

    `embedding`: the run writes the embedding column (CSV), so the file must have it too.

    Raises:
        OutputError: the file cannot be read as output of this format (and, for CSV, of this
            vocabulary), so appending to it would corrupt it.
    """
    if not path.exists():
        return Previous(frozenset(), frozenset(), [])
    try:
        if fmt == "json":
            return _previous_json(path)
        _drop_partial_line(path)
        if fmt == "jsonl":
            return _previous_jsonl(path)
        return _previous_csv(path, tag_names, embedding=embedding)
    except (OSError, UnicodeDecodeError) as error:
        raise OutputError(f"cannot read {path} to resume: {error}") from error


def _summarise(records: list[dict[str, Any]], path: Path) -> Previous:
    done = set()
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("file"), str):
            raise OutputError(f"{path} holds a record without a file name; not tagger output?")
        if not record.get("error"):
            done.add(_key(record["file"]))
    models = frozenset(str(r["model_id"]) for r in records if r.get("model_id"))
    return Previous(frozenset(done), models, records)


def _previous_json(path: Path) -> Previous:
    if path.stat().st_size == 0:
        return Previous(frozenset(), frozenset(), [])
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise OutputError(f"{path} is not a JSON document ({error}); not tagger output?") from None
    if not isinstance(document, dict) or not isinstance(document.get("files"), list):
        raise OutputError(f'{path} has no "files" list; not tagger output?')
    return _summarise(document["files"], path)


def _previous_jsonl(path: Path) -> Previous:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise OutputError(f"{path} line {number} is not JSON; not tagger output?") from None
    return _summarise(records, path)


def _previous_csv(path: Path, tag_names: Sequence[str], *, embedding: bool) -> Previous:
    text = path.read_text(encoding="utf-8")
    if not text:
        return Previous(frozenset(), frozenset(), [])
    rows = list(csv.reader(io.StringIO(text, newline="")))
    expected = csv_header(tag_names) + (["embedding"] if embedding else [])
    if rows and rows[0] != expected:
        raise OutputError(
            f"{path} has other columns than this run writes (another vocabulary, or not tagger "
            "output); write to a new file"
        )
    records = [dict(zip(CSV_FIELDS, row, strict=False)) for row in rows[1:] if row]
    return _summarise([r for r in records if not r.get("start")], path)
