"""`tagger tag --engine ray` on a local Ray cluster (2 CPUs) over real music: the same scores
as `tagger tag`, a rerun that skips what DEST holds, a broken file recorded with its error."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.cli.main import main
from app.pipeline.defaults import default_checkpoint_path
from tests.app.scale.conftest import BROKEN, TRACKS, require_ray

require_ray()

import pyarrow.parquet as pq  # noqa: E402  (the scale extra)

from app.scale.job import JobOptions, JobReport, run_job  # noqa: E402
from app.scale.storage import locate  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
NAMES = sorted(Path(t).name for t in TRACKS)
# Same model, same precision as the local engine below.
V1 = default_checkpoint_path().with_name("default-v1.safetensors")
COMMON = ["--precision", "fp32", "--top-k", "5", "--no-progress", "--checkpoint", str(V1)]


def _options(source: Path, dest: str, fmt: Any = "parquet", **overrides: Any) -> JobOptions:
    values: dict[str, Any] = {
        "source": locate(str(source)),
        "dest": locate(dest),
        "format": fmt,
        "recursive": False,
        # v1 (50 MTT tags): the engine's records against the CLI's; 100-tag models below.
        "checkpoint": V1,
        "device": "cpu",
        "precision": "fp32",
        "channels_last": True,
        "compile": "off",
        "batch_windows": 8,
        "top_k": 5,
        "threshold": None,
        "segments": False,
        "max_seconds": None,
        "progress": False,
    }
    values.update(overrides)
    return JobOptions(**values)


@pytest.fixture(scope="module")
def local_scores(songs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`tagger tag`'s CSV (every tag's score) and JSON Lines (with embeddings and segments) of
    the same folder."""
    out = tmp_path_factory.mktemp("local")
    assert main(["tag", str(songs), "-f", "csv", "-o", str(out / "a.csv"), *COMMON]) == 1
    jsonl = ["-f", "jsonl", "-o", str(out / "a.jsonl"), "--embedding", "--segments"]
    assert main(["tag", str(songs), *jsonl, *COMMON]) == 1
    with (out / "a.csv").open(newline="") as handle:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(handle)}
    lines = [json.loads(line) for line in (out / "a.jsonl").read_text().splitlines()]
    return {"csv": rows, "jsonl": {Path(r["file"]).name: r for r in lines}}


@pytest.fixture(scope="module")
def first_run(local_ray: str, songs: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    dest = tmp_path_factory.mktemp("ray") / "tags"
    report = run_job(_options(songs, dest.as_uri()), say=lambda _: None)  # a file:// URI
    return dest, report


def _parquet_rows(dest: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(dest).to_pylist()
    return rows


def test_parquet_scores_match_tagger_tag_within_1e4(
    first_run: tuple[Path, JobReport], local_scores: dict[str, Any]
) -> None:
    dest, report = first_run
    assert report.tagged == 4
    rows = {Path(r["file"]).name: r for r in _parquet_rows(dest) if r["error"] is None}
    assert sorted(rows) == NAMES
    for name in NAMES:
        expected = local_scores["csv"][name]
        scores = dict(rows[name]["scores"])
        assert len(scores) == 50
        worst = max(abs(scores[tag] - float(expected[tag])) for tag in scores)
        assert worst <= 1e-4, (name, worst)
        assert rows[name]["model_id"] == expected["model_id"]
        assert rows[name]["windows"] == int(expected["windows"])
        local = local_scores["jsonl"][name]
        assert [t["tag"] for t in rows[name]["tags"]] == [t["tag"] for t in local["tags"]]
        assert rows[name]["duration_seconds"] == local["duration_seconds"]
        assert rows[name]["format"] == local["format"] == "ogg"


def test_a_broken_file_is_recorded_with_its_error_and_the_job_goes_on(
    first_run: tuple[Path, JobReport],
) -> None:
    dest, report = first_run
    failed = [r for r in _parquet_rows(dest) if r["error"] is not None]
    assert [Path(r["file"]).name for r in failed] == [BROKEN]
    assert failed[0]["error"].startswith("not audio in a supported format")
    assert failed[0]["scores"] is None
    assert [(Path(f).name, why[:10]) for f, why in report.failed] == [(BROKEN, "not audio ")]


def test_a_rerun_through_the_cli_skips_every_tagged_file(
    first_run: tuple[Path, JobReport], local_ray: str, songs: Path
) -> None:
    """`tagger tag --engine ray --address` in another process, on this module's cluster."""
    dest, _ = first_run
    before = len(_parquet_rows(dest))
    command = [sys.executable, "-m", "app.cli", "tag", "--engine", "ray", "--address", local_ray]
    result = subprocess.run(
        [*command, str(songs), "--output", dest.as_uri(), *COMMON],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-3000:]  # the broken file failed again
    assert "files: 0 tagged, 1 failed, 4 skipped (already in DEST)" in result.stderr
    rows = _parquet_rows(dest)
    assert len(rows) == before + 1  # only the broken file's record again
    assert sum(Path(r["file"]).name == BROKEN for r in rows) == 2


def test_json_lines_records_are_tagger_tags_records(
    local_ray: str, songs: Path, tmp_path: Path, local_scores: dict[str, Any]
) -> None:
    dest = tmp_path / "jsonl"
    options = _options(songs, str(dest), "jsonl", segments=True, embedding=True)
    report = run_job(options, say=lambda _: None)
    assert (report.tagged, len(report.failed)) == (4, 1)
    records = [json.loads(line) for path in sorted(dest.glob("*.jsonl")) for line in path.open()]
    by_name = {Path(r["file"]).name: r for r in records}
    assert set(by_name) == {*NAMES, BROKEN}
    for name in NAMES:
        local = local_scores["jsonl"][name]
        record = by_name[name]
        assert set(record) == {*local, "scores"}
        assert len(record["segments"]) == local["windows"]
        assert record["embedding"]["kind"] == local["embedding"]["kind"]
        assert record["embedding"]["dim"] == local["embedding"]["dim"] == 512
        vectors = zip(record["embedding"]["vector"], local["embedding"]["vector"], strict=True)
        assert max(abs(a - b) for a, b in vectors) <= 1e-4
        assert set(record["segments"][0]) == set(local["segments"][0])
        for ours, theirs in zip(record["tags"], local["tags"], strict=True):
            assert ours["tag"] == theirs["tag"]
            assert abs(ours["score"] - theirs["score"]) <= 1e-4
    assert set(by_name[BROKEN]) == {"file", "model_id", "error"}


def test_a_two_vocabulary_model_writes_ids_and_one_taxonomy(
    local_ray: str, songs: Path, tmp_path: Path, two_vocabulary_checkpoint: Path
) -> None:
    dest = tmp_path / "msd"
    options = _options(
        songs, str(dest), checkpoint=two_vocabulary_checkpoint, taxonomy="msd", top_k=10
    )
    report = run_job(options, say=lambda _: None)
    assert report.tagged == 4
    for row in (r for r in _parquet_rows(dest) if r["error"] is None):
        scores = dict(row["scores"])
        assert len(scores) == 50
        assert list(scores)[:2] == ["msd/rock", "msd/pop"]
        tags = row["tags"]
        assert len(tags) == 10
        assert {t["taxonomy"] for t in tags} == {"msd"}
        assert all(t["tag"].startswith("msd/") for t in tags)
        assert len({t["synonym_group"] for t in tags}) == 10


def test_an_unknown_taxonomy_stops_the_job_before_it_starts(
    local_ray: str, songs: Path, tmp_path: Path, two_vocabulary_checkpoint: Path
) -> None:
    from app.pipeline.vocabulary import UnknownTaxonomyError

    options = _options(
        songs, str(tmp_path / "x"), checkpoint=two_vocabulary_checkpoint, taxonomy="lastfm"
    )
    with pytest.raises(UnknownTaxonomyError, match="taxonomies are mtt, msd"):
        run_job(options, say=lambda _: None)
    assert not (tmp_path / "x").exists()
