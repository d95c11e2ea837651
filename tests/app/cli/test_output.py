"""`tagger tag`'s output writers and --resume reading, on hand-made results with known scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from app.cli.batch_tagging import FileResult
from app.cli.output import (
    CsvWriter,
    Describer,
    JsonLinesWriter,
    JsonWriter,
    OutputError,
    TableWriter,
    read_previous,
)
from model.tags import Tag

TAGS = (
    Tag("rock", "genre", "rock"),
    Tag("piano", "instrument", "piano"),
    Tag("calm", "mood", "calm"),
)
NAMES = ["rock", "piano", "calm"]


def describer(*, segments: bool = False, top_k: int = 2) -> Describer:
    return Describer(
        model_id="q2l-small@0123456789ab",
        tags=TAGS,
        thresholds=torch.tensor([0.5, 0.25, 0.75]),
        top_k=top_k,
        segments=segments,
        window_seconds=3.6905625,
    )


GOOD = FileResult(
    path="songs/a.m4a",
    duration_seconds=5.0000004,
    container="mov,mp4,m4a,3gp,3g2,mj2",
    track_scores=torch.tensor([0.375, 0.625, 0.123456789]),
    window_scores=torch.tensor([[0.25, 0.5, 0.0], [0.5, 0.75, 0.246913578]]),
    window_times=[(0.0, 3.6905625), (1.3094375, 5.0000004)],
)
BAD = FileResult(path="songs/b.mp3", error="the file is empty")


def test_a_record_uses_the_services_field_names_rounded() -> None:
    assert describer().record(GOOD) == {
        "file": "songs/a.m4a",
        "model_id": "q2l-small@0123456789ab",
        "duration_seconds": 5.0,
        "windows": 2,
        "window_seconds": 3.69056,
        "format": "mp4",
        "tags": [
            {
                "tag": "piano",
                "score": 0.625,
                "category": "instrument",
                "synonym_group": "piano",
                "threshold": 0.25,
                "passes_threshold": True,
            },
            {
                "tag": "rock",
                "score": 0.375,
                "category": "genre",
                "synonym_group": "rock",
                "threshold": 0.5,
                "passes_threshold": False,
            },
        ],
    }


def test_segments_carry_every_windows_scores() -> None:
    segments = describer(segments=True).record(GOOD)["segments"]
    assert segments == [
        {"start": 0.0, "end": 3.691, "scores": {"rock": 0.25, "piano": 0.5, "calm": 0.0}},
        {"start": 1.309, "end": 5.0, "scores": {"rock": 0.5, "piano": 0.75, "calm": 0.24691}},
    ]


def test_a_failed_file_is_a_record_with_its_error() -> None:
    assert describer().record(BAD) == {
        "file": "songs/b.mp3",
        "model_id": "q2l-small@0123456789ab",
        "error": "the file is empty",
    }


def test_json_lines_are_one_record_per_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "tags.jsonl"
    writer = JsonLinesWriter(describer(), path, append=False)
    writer.write(GOOD)
    writer.write(BAD)
    writer.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["tags"][0]["tag"] == "piano"
    assert json.loads(lines[1])["error"] == "the file is empty"


def test_csv_has_a_header_a_row_per_file_and_one_per_window(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    writer = CsvWriter(describer(segments=True), path, append=False)
    writer.write(GOOD)
    writer.write(BAD)
    writer.close()
    assert path.read_text(encoding="utf-8").splitlines() == [
        "file,model_id,duration_seconds,windows,format,start,end,top_tags,error,rock,piano,calm",
        "songs/a.m4a,q2l-small@0123456789ab,5.0,2,mp4,,,piano;rock,,0.375,0.625,0.12346",
        "songs/a.m4a,q2l-small@0123456789ab,5.0,2,mp4,0.0,3.691,piano;rock,,0.25,0.5,0.0",
        "songs/a.m4a,q2l-small@0123456789ab,5.0,2,mp4,1.309,5.0,piano;rock,,0.5,0.75,0.24691",
        "songs/b.mp3,q2l-small@0123456789ab,,,,,,,the file is empty,,,",
    ]


def test_the_table_shows_durations_and_top_tags(tmp_path: Path) -> None:
    path = tmp_path / "tags.txt"
    writer = TableWriter(describer(), path, ["songs/a.m4a", "songs/b.mp3"])
    writer.write(GOOD)
    writer.write(BAD)
    writer.close()
    assert path.read_text(encoding="utf-8").splitlines() == [
        "file         duration  top tags",
        "songs/a.m4a    0:05.0  piano 0.62  rock 0.38",
        "songs/b.mp3         -  error: the file is empty",
    ]


def test_a_json_document_is_rewritten_whole_keeping_earlier_records(tmp_path: Path) -> None:
    path = tmp_path / "tags.json"
    earlier = [
        {"file": str(tmp_path / "old.mp3"), "model_id": "m"},
        {"file": "songs/b.mp3", "model_id": "m", "error": "was broken"},
    ]
    writer = JsonWriter(describer(), path, earlier)
    writer.write(BAD)  # b is tagged again: its earlier record goes
    writer.close()
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["model_id"] == "q2l-small@0123456789ab"
    assert [r["file"] for r in document["files"]] == [str(tmp_path / "old.mp3"), "songs/b.mp3"]
    assert document["files"][1]["error"] == "the file is empty"
    assert not (tmp_path / "tags.json.partial").exists()


def test_resume_reads_json_lines_and_cuts_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "tags.jsonl"
    done = json.dumps({"file": "a.mp3", "model_id": "m1", "tags": []})
    failed = json.dumps({"file": "b.mp3", "model_id": "m2", "error": "broken"})
    path.write_text(f'{done}\n{failed}\n{{"file": "c.mp', encoding="utf-8")
    previous = read_previous(path, "jsonl", NAMES)
    assert previous.is_done("a.mp3")
    assert previous.is_done("./a.mp3")  # matched by absolute path
    assert not previous.is_done("b.mp3")  # failed files are retried
    assert not previous.is_done("c.mp3")
    assert previous.model_ids == frozenset({"m1", "m2"})
    assert path.read_text(encoding="utf-8") == f"{done}\n{failed}\n"


def test_resume_reads_csv_and_refuses_another_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    writer = CsvWriter(describer(segments=True), path, append=False)
    writer.write(GOOD)
    writer.write(BAD)
    writer.close()
    previous = read_previous(path, "csv", NAMES)
    assert previous.done == frozenset({str(Path("songs/a.m4a").absolute())})
    assert previous.model_ids == frozenset({"q2l-small@0123456789ab"})
    with pytest.raises(OutputError, match="other columns"):
        read_previous(path, "csv", ["rock", "piano", "jazz"])


def test_resume_starts_fresh_without_a_file_and_refuses_what_is_not_tagger_output(
    tmp_path: Path,
) -> None:
    missing = read_previous(tmp_path / "none.jsonl", "jsonl", NAMES)
    assert missing.done == frozenset()
    assert missing.records == []
    document = tmp_path / "other.json"
    document.write_text('{"results": []}', encoding="utf-8")
    with pytest.raises(OutputError, match='no "files" list'):
        read_previous(document, "json", NAMES)
    lines = tmp_path / "other.jsonl"
    lines.write_text('{"file": "a.mp3"}\nnot json\n', encoding="utf-8")
    with pytest.raises(OutputError, match="line 2 is not JSON"):
        read_previous(lines, "jsonl", NAMES)
