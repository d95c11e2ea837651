"""The `tagger` command line."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from app.cli.batch_tagging import BatchTagger, InferFn
from app.cli.main import _missing_checkpoint_message, main
from app.cli.output import read_previous
from app.pipeline.defaults import default_checkpoint_path
from model.audio.decode import decode_audio
from model.checkpoint import Checkpoint, load_checkpoint
from model.inference import predict_track
from model.runtime import Runtime, RuntimeOptions
from tests.app.audio import encode, wav_pcm16
from tests.app.conftest import GUITAR_THRESHOLD


def test_tags_prints_the_vocabulary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tags"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "index\tname\tcategory\tsynonym_group\tthreshold"
    assert lines[2] == "0\tguitar\tinstrument\tguitar\t0.500"
    assert len(lines) == 2 + 50


def test_tags_of_a_checkpoint_as_json(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tags", "--checkpoint", str(checkpoint), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {
        "name": "guitar",
        "category": "instrument",
        "synonym_group": "guitar",
        "threshold": GUITAR_THRESHOLD,
    }


def test_serve_refuses_a_missing_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing.safetensors"
    monkeypatch.setenv("TAGGER_CHECKPOINT", str(missing))
    assert main(["serve"]) == 1
    error = capsys.readouterr().err
    assert f"checkpoint not found: {missing}" in error
    assert "TAGGER_CHECKPOINT" in error


def test_the_missing_default_checkpoint_message_explains_what_to_do() -> None:
    message = _missing_checkpoint_message(default_checkpoint_path())
    assert "bundled default checkpoint is missing" in message
    assert "make default-model" in message
    assert "TAGGER_CHECKPOINT" in message
    assert "never serves untrained weights" in message


def test_serve_warns_about_unknown_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAGGER_MAX_BATCH_WINDOW", "8")  # missing S
    monkeypatch.setenv("TAGGER_CHECKPOINT", str(tmp_path / "nothing.safetensors"))
    assert main(["serve"]) == 1
    assert "TAGGER_MAX_BATCH_WINDOW is not a setting" in capsys.readouterr().err


def test_serve_refuses_bad_settings_and_bad_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAGGER_MAX_BATCH_WINDOWS", "0")
    assert main(["serve"]) == 2
    assert "invalid settings" in capsys.readouterr().err
    monkeypatch.delenv("TAGGER_MAX_BATCH_WINDOWS")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    assert main(["serve", "--checkpoint", str(corrupt)]) == 1
    assert "cannot serve this checkpoint" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_serve_refuses_cuda_where_there_is_none(
    checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--checkpoint", str(checkpoint), "--device", "cuda"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


# ----- tagger tag ---------------------------------------------------------------------------
#
# These run the real console script on real encoded audio with the bundled v1 model (50 MTT
# tags, synonyms listed side by side, as every single-vocabulary checkpoint), and compare what
# it writes with the model run directly on each decoded file. The two-vocabulary default's ids,
# taxonomies and synonym folding are tested in test_vocabularies_cli.py.

DEFAULT = default_checkpoint_path().with_name("default-v1.safetensors")
# Scores are written with 5 decimals; batching windows of several files together may change
# the last float bits of a forward pass.
TOLERANCE = 2e-4
CLIPS = {"a.mp3": ("mp3", 4.0), "b.ogg": ("ogg", 3.0), "sub/c.flac": ("flac", 6.0)}


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def _tagger(*args: str | Path, cwd: Path, precision: str = "fp32") -> Run:
    """Run the console script; fp32 unless asked, to compare with the fp32 reference closely."""
    script = Path(sys.executable).with_name("tagger")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    done = subprocess.run(
        [*command, "tag", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TAGGER_CHECKPOINT": str(DEFAULT), "TAGGER_PRECISION": precision},
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def default_model() -> Checkpoint:
    return load_checkpoint(DEFAULT)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three real clips (one in a subfolder), a corrupt mp3, a text file and a hidden file."""
    for name, (fmt, seconds) in CLIPS.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(encode(fmt, seconds))
    # Starts like an MP3 (an ID3 tag), so it reaches the decoders, which cannot make sense of it.
    (tmp_path / "broken.mp3").write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(4000))
    (tmp_path / "notes.txt").write_text("not audio\n")
    # What macOS leaves next to songs on shared drives: hidden, and not audio.
    (tmp_path / "._a.mp3").write_bytes(b"\x00\x05\x16\x07" + bytes(100))
    return tmp_path


@pytest.fixture(scope="module")
def expected(default_model: Checkpoint) -> dict[str, torch.Tensor]:
    """Window scores of each clip, from the model run directly on the decoded audio."""
    rate = default_model.model.audio.sample_rate
    scores = {}
    for name, (fmt, seconds) in CLIPS.items():
        audio = decode_audio(encode(fmt, seconds), sample_rate=rate)
        scores[name] = predict_track(
            default_model.model, torch.from_numpy(audio.samples)
        ).window_scores
    return scores


def _names(default_model: Checkpoint) -> list[str]:
    return [tag.name for tag in default_model.metadata.tags]


def _top(scores: torch.Tensor, names: list[str], k: int) -> list[str]:
    return [names[i] for i in torch.argsort(scores, descending=True, stable=True)[:k].tolist()]


def _check_record(
    record: dict[str, Any], expected: torch.Tensor, names: list[str], top_k: int
) -> None:
    track = expected.mean(dim=0)
    assert record["windows"] == expected.shape[0]
    assert record["model_id"].startswith("q2l-small@")
    assert [t["tag"] for t in record["tags"]] == _top(track, names, top_k)
    for tag in record["tags"]:
        assert tag["score"] == pytest.approx(float(track[names.index(tag["tag"])]), abs=TOLERANCE)
        assert tag["passes_threshold"] == (tag["score"] >= tag["threshold"])


def test_tag_prints_a_table(
    folder: Path, default_model: Checkpoint, expected: dict[str, torch.Tensor]
) -> None:
    # The default precision: bf16 on CPUs that compute it natively, where scores move by up to
    # 0.02 from fp32 (tests/model/test_runtime*.py) and near-ties may swap places.
    run = _tagger("a.mp3", "sub/c.flac", cwd=folder, precision="auto")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split() == ["file", "duration", "top", "tags"]
    assert len(lines) == 3
    names = _names(default_model)
    rows = zip(lines[1:], ["a.mp3", "sub/c.flac"], ["0:04.0", "0:06.0"], strict=True)
    for line, name, duration in rows:
        cells = line.split()
        assert cells[:2] == [name, duration]
        # Five tags by default, each followed by its score with two decimals, best first.
        tags, scores = cells[2::2], [float(score) for score in cells[3::2]]
        assert len(tags) == 5
        assert scores == sorted(scores, reverse=True)
        track = expected[name].mean(dim=0)
        assert tags[0] == _top(track, names, 1)[0]
        for tag, score in zip(tags, scores, strict=True):
            assert score == pytest.approx(float(track[names.index(tag)]), abs=0.03)
    assert "files: 2 tagged, 0 failed, 0 skipped" in run.err
    assert "audio hours per hour" in run.err


def test_tag_writes_json_and_skips_a_corrupt_file(
    folder: Path, default_model: Checkpoint, expected: dict[str, torch.Tensor]
) -> None:
    run = _tagger(".", "--recursive", "--format", "json", "--output", "out/tags.json", cwd=folder)
    assert run.code == 1  # one file failed; the others are tagged and written
    document = json.loads((folder / "out" / "tags.json").read_text())
    records = {record["file"]: record for record in document["files"]}
    assert sorted(records) == ["a.mp3", "b.ogg", "broken.mp3", "sub/c.flac"]
    assert document["model_id"] == records["a.mp3"]["model_id"]
    for name in CLIPS:
        _check_record(records[name], expected[name], _names(default_model), 10)
        assert "segments" not in records[name]
    assert records["b.ogg"]["format"] == "ogg"
    assert records["sub/c.flac"]["duration_seconds"] == pytest.approx(6.0, abs=0.01)
    assert "could not decode the audio" in records["broken.mp3"]["error"]
    assert str(folder) not in records["broken.mp3"]["error"]  # the file as the user named it
    assert "tags" not in records["broken.mp3"]
    assert "failed: broken.mp3: could not decode the audio" in run.err
    assert "files: 3 tagged, 1 failed, 0 skipped" in run.err
    assert "2 non-audio or hidden files in folders ignored" in run.err  # notes.txt, ._a.mp3


def test_tag_writes_csv_of_a_folder_without_its_subfolders(
    folder: Path, default_model: Checkpoint, expected: dict[str, torch.Tensor]
) -> None:
    run = _tagger(folder, "--format", "csv", "--top-k", "3", cwd=folder)
    assert run.code == 1
    rows = list(csv.DictReader(io.StringIO(run.out)))
    names = _names(default_model)
    assert list(rows[0])[9:] == names  # one score column per tag of the vocabulary
    by_file = {Path(row["file"]).name: row for row in rows}
    assert sorted(by_file) == ["a.mp3", "b.ogg", "broken.mp3"]  # not sub/c.flac
    for name in ["a.mp3", "b.ogg"]:
        row, track = by_file[name], expected[name].mean(dim=0)
        assert row["error"] == ""
        assert row["start"] == ""
        assert row["top_tags"].split(";") == _top(track, names, 3)
        scores = torch.tensor([float(row[tag]) for tag in names])
        assert torch.allclose(scores, track, atol=TOLERANCE)
    assert by_file["broken.mp3"]["error"].startswith("could not decode the audio")
    assert by_file["broken.mp3"]["guitar"] == ""
    assert "1 subfolders not searched (--recursive does)" in run.err


def test_tag_jsonl_with_segments_and_a_missing_file(
    folder: Path, default_model: Checkpoint, expected: dict[str, torch.Tensor]
) -> None:
    args = ["nothing.mp3", "sub/c.flac", "b.ogg", "--format", "jsonl", "--segments", "--progress"]
    run = _tagger(*args, cwd=folder)
    assert run.code == 1  # nothing.mp3 does not exist
    missing, *records = [json.loads(line) for line in run.out.splitlines()]
    assert missing == {
        "file": "nothing.mp3",
        "model_id": records[0]["model_id"],
        "error": "no such file or folder",
    }
    assert [r["file"] for r in records] == ["sub/c.flac", "b.ogg"]  # command-line order
    names = _names(default_model)
    for record in records:
        windows = expected[record["file"]]
        _check_record(record, windows, names, 10)
        assert len(record["segments"]) == windows.shape[0]
        for segment, window in zip(record["segments"], windows, strict=True):
            scores = torch.tensor([segment["scores"][tag] for tag in names])
            assert torch.allclose(scores, window, atol=TOLERANCE)
    # 6 s: two windows of 3.69 s, the last one aligned to the end of the track.
    spans = [(s["start"], s["end"]) for s in records[0]["segments"]]
    assert spans == [(0.0, pytest.approx(3.691, abs=1e-3)), (pytest.approx(2.309, abs=1e-3), 6.0)]
    assert records[1]["segments"][0]["end"] == 3.0  # a short clip: one window, clipped
    assert "3/3" in run.err  # the progress bar
    assert "h audio" in run.err


def _output_files(output: Path, fmt: str) -> list[str]:
    text = output.read_text()
    if fmt == "jsonl":
        return [json.loads(line)["file"] for line in text.splitlines()]
    if fmt == "csv":
        return [row["file"] for row in csv.DictReader(io.StringIO(text))]
    return [record["file"] for record in json.loads(text)["files"]]


# The first format runs the console script; the others call its main() in this process, which
# skips the seconds of importing torch and loading the model in a new process.
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_tag_resume_skips_files_already_in_the_output(
    folder: Path, fmt: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def tagger(*args: str) -> Run:
        if fmt == "jsonl":
            return _tagger(*args, cwd=folder)
        monkeypatch.chdir(folder)
        monkeypatch.setenv("TAGGER_CHECKPOINT", str(DEFAULT))
        code = main(["tag", *args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    output = f"tags.{fmt}"
    first = tagger("a.mp3", "broken.mp3", "--format", fmt, "--output", output)
    assert first.code == 1
    (folder / "d.wav").write_bytes(encode("wav", 2.0))
    again = tagger(".", "-r", "--format", fmt, "--output", output, "--resume")
    assert again.code == 1  # broken.mp3 is tried again and fails again
    assert f"files to tag: 4, 1 already in {output}" in again.err
    assert "files: 3 tagged, 1 failed, 1 skipped (already in the output)" in again.err
    files = _output_files(folder / output, fmt)
    if fmt == "json":
        # The document is rewritten: the failed file's old record gives way to the new one.
        assert files == ["a.mp3", "b.ogg", "broken.mp3", "d.wav", "sub/c.flac"]
    else:
        # Appended: a.mp3 once, the failed file once per attempt, then the new files.
        assert files == ["a.mp3", "broken.mp3", "b.ogg", "broken.mp3", "d.wav", "sub/c.flac"]


def test_an_interrupted_run_keeps_its_results_and_resume_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = wav_pcm16(2.0)
    names = [f"clip{i:02d}.wav" for i in range(60)]
    for name in names:
        (tmp_path / name).write_bytes(clip)
    script = Path(sys.executable).with_name("tagger")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    # One window per forward pass, so the run lasts long enough to be interrupted.
    args = ["tag", ".", "--format", "jsonl", "--output", "tags.jsonl", "--batch-windows", "1"]
    process = subprocess.Popen(
        [*command, *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TAGGER_CHECKPOINT": str(DEFAULT)},
        # A shell without job control starts background jobs with SIGINT ignored; undo that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    output = tmp_path / "tags.jsonl"
    deadline = time.monotonic() + 120
    while not (output.exists() and output.read_text().count("\n") >= 1):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted: files:" in err
    done = [json.loads(line)["file"] for line in output.read_text().splitlines()]
    assert 1 <= len(done) < len(names)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAGGER_CHECKPOINT", str(DEFAULT))
    assert main([*args[:-2], "--resume"]) == 0  # full batches again
    assert f"{len(done)} already in tags.jsonl" in capsys.readouterr().err
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["file"] for r in records) == names  # every file once
    assert all("tags" in r for r in records)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resume"], "--resume needs --format json, jsonl, csv"),
        (["--format", "jsonl", "--resume"], "--resume needs --output FILE"),
        # The bundled default (v3) has 100 tags.
        (["--top-k", "101"], "--top-k must be between 1 and 100"),
        (["--batch-windows", "0"], "--batch-windows must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_tag_refuses_bad_options(
    folder: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tag", str(folder), *args]) == 2
    assert message in capsys.readouterr().err


def test_tag_refuses_to_resume_an_output_of_something_else(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = folder / "tags.csv"
    output.write_text("title,artist\nx,y\n")
    command = ["tag", str(folder), "--format", "csv", "--output", str(output), "--resume"]
    assert main(command) == 2
    assert "has other columns than this run writes" in capsys.readouterr().err
    assert output.read_text() == "title,artist\nx,y\n"


def test_resume_drops_the_line_an_interrupted_run_left_unfinished(tmp_path: Path) -> None:
    output = tmp_path / "tags.jsonl"
    output.write_text('{"file": "a.mp3", "model_id": "m"}\n{"file": "b.ogg", "mod')
    previous = read_previous(output, "jsonl", [])
    assert previous.is_done("a.mp3")
    assert previous.is_done("./a.mp3")  # the same file
    assert not previous.is_done("b.ogg")
    assert output.read_text() == '{"file": "a.mp3", "model_id": "m"}\n'


def _fp32_runtime() -> Runtime:
    """The service's runtime in fp32, on its own copy of the model (it takes ownership)."""
    options = RuntimeOptions(precision="fp32", compile="off")
    return Runtime(load_checkpoint(DEFAULT).model, torch.device("cpu"), options, max_batch=8)


def _tagger_of(checkpoint: Checkpoint, infer: InferFn, batch_windows: int) -> BatchTagger:
    return BatchTagger(
        infer,
        window_samples=checkpoint.model.audio.window_samples,
        sample_rate=checkpoint.model.audio.sample_rate,
        batch_windows=batch_windows,
    )


def test_batches_hold_windows_of_several_files(
    folder: Path, default_model: Checkpoint, expected: dict[str, torch.Tensor]
) -> None:
    batches: list[int] = []
    model = _fp32_runtime()

    def infer(windows: torch.Tensor) -> torch.Tensor:
        batches.append(windows.shape[0])
        return model(windows)

    files = [str(folder / name) for name in CLIPS]  # 2 + 1 + 2 windows
    results = list(_tagger_of(default_model, infer, batch_windows=4).tag(files))
    assert batches == [4, 1]
    assert [r.path for r in results] == files
    for result, name in zip(results, CLIPS, strict=True):
        assert result.window_scores is not None
        assert torch.allclose(result.window_scores, expected[name], atol=1e-4)


def test_a_failing_batch_fails_only_its_files(folder: Path, default_model: Checkpoint) -> None:
    model = _fp32_runtime()
    calls = 0

    def infer(windows: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            # A real model does not fail on windows; this stands for an out-of-memory error.
            raise RuntimeError("out of memory")
        return model(windows)

    files = [str(folder / name) for name in ["b.ogg", "a.mp3", "sub/c.flac"]]  # 1 + 2 + 2
    results = list(_tagger_of(default_model, infer, batch_windows=2).tag(files))
    assert [r.ok for r in results] == [False, False, True]
    assert "the model failed on a batch holding this file" in (results[0].error or "")


def test_a_file_name_that_looks_like_an_ffmpeg_protocol_is_read_as_a_file(
    tmp_path: Path, default_model: Checkpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FFmpeg would read "concat:song.m4a" as its concat protocol over a file "song.m4a" (and
    # "http:..." as an address); soundfile, the fallback decoder, cannot read m4a at all.
    (tmp_path / "concat:song.m4a").write_bytes(encode("m4a", 3.0))
    monkeypatch.chdir(tmp_path)
    infer = _fp32_runtime()
    [result] = _tagger_of(default_model, infer, batch_windows=8).tag(["concat:song.m4a"])
    assert result.ok, result.error
    assert result.duration_seconds == pytest.approx(3.0, abs=0.05)
