"""SOURCE and DEST as local paths and URIs, and the CLI's checks before Ray starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli.main import main
from app.cli.ray_command import stage_nodes
from tests.app.scale.conftest import require_ray

require_ray()

from app.scale.storage import (  # noqa: E402  (the scale extra)
    StorageError,
    done_files,
    list_audio,
    locate,
    read_outcomes,
)


def test_local_paths_and_file_uris_name_files_by_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative, uri = locate("songs"), locate((tmp_path / "songs").as_uri())
    assert relative.path == uri.path == str(tmp_path / "songs")
    assert relative.scheme == uri.scheme == ""


def test_an_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(StorageError, match="cannot open nosuch://bucket/music"):
        locate("nosuch://bucket/music")


def test_folders_contribute_audio_by_name_and_skip_hidden_files(tmp_path: Path) -> None:
    for name in ["b.mp3", "a.OGG", "notes.txt", ".hidden.mp3", "sub/c.flac", ".git/d.wav"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    flat = list_audio(locate(str(tmp_path)), recursive=False)
    assert [Path(p).name for p in flat.paths] == ["a.OGG", "b.mp3"]
    assert flat.ignored == 2  # notes.txt, .hidden.mp3
    deep = list_audio(locate(str(tmp_path)), recursive=True)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in deep.paths] == [
        "a.OGG",
        "b.mp3",
        "sub/c.flac",
    ]


def test_a_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no such file or folder"):
        list_audio(locate(str(tmp_path / "nothing")), recursive=False)


def test_resuming_counts_only_successful_records(tmp_path: Path) -> None:
    (tmp_path / "part.jsonl").write_text(
        '{"file": "/m/a.mp3", "model_id": "m", "duration_seconds": 3.0}\n'
        '{"file": "/m/b.mp3", "model_id": "m", "error": "the file is empty"}\n'
    )
    outcomes = read_outcomes(locate(str(tmp_path)), "jsonl")
    assert done_files(outcomes) == {"/m/a.mp3"}
    assert read_outcomes(locate(str(tmp_path / "new")), "jsonl") == []


def test_dest_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out.parquet").write_bytes(b"")
    with pytest.raises(StorageError, match="DEST must be a folder"):
        read_outcomes(locate(str(tmp_path / "out.parquet")), "parquet")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--engine", "ray", "songs"], "--engine ray needs --output DEST"),
        (["--engine", "ray", "-f", "csv", "songs", "-o", "x"], "writes parquet or jsonl, not csv"),
        (["--engine", "ray", "a", "b", "-o", "x"], "takes one SOURCE"),
        (["-f", "parquet", "songs", "-o", "x"], "--format parquet needs --engine ray"),
        (["--engine", "ray", "--actors", "0", "songs", "-o", "x"], "--actors must be at least 1"),
    ],
)
def test_the_cli_refuses_bad_ray_options_before_starting_ray(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tag", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_a_file_that_is_not_a_checkpoint_stops_the_command_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.safetensors").write_text("not a checkpoint")
    arguments = ["--engine", "ray", str(tmp_path), "-o", str(tmp_path / "out")]
    assert main(["tag", *arguments, "--checkpoint", str(tmp_path / "model.safetensors")]) == 2
    assert "model.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_summary_reads_the_nodes_of_each_stage_from_rays_stats() -> None:
    stats = (
        "Operator 1 ReadBinary->Map(decode_file): 4 tasks executed, 4 blocks produced in 1s\n"
        "* Remote wall time: 27.7ms min, 71.52ms max, 54.34ms mean, 217.35ms total\n"
        "* Tasks per node: 1 min, 3 max, 2 mean; 2 nodes used\n"
        "Operator 2 MapBatches(TrackScorer): 2 tasks executed, 2 blocks produced in 0.67s\n"
        "* Tasks per node: 2 min, 2 max, 2 mean; 1 nodes used\n"
    )
    assert stage_nodes(stats) == [
        ("ReadBinary->Map(decode_file)", 2),
        ("MapBatches(TrackScorer)", 1),
    ]
