"""`tagger index` and `tagger similar` on real music, and `tagger tag --embedding`, in-process
(`app.cli.main.main`) with the bundled default model and real SQLite files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.catalog.store import CatalogStore
from app.cli.main import main
from model.checkpoint import load_checkpoint

DIM = 512  # q2l-small's backbone mean+max


def similar(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = main(["similar", *args, "--format", "json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else {}, captured.err


def test_the_other_half_of_each_track_is_its_nearest_neighbour(
    catalog: Path, excerpts: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store = CatalogStore(catalog, readonly=True)
    assert len(store) == 6
    spec = store.spec
    assert spec is not None
    assert (spec.kind, spec.dim) == ("backbone-mean-max", DIM)
    assert spec.model_id == load_checkpoint_id()
    for style in ("techno", "orchestral", "metal"):
        # A catalogued file: its stored embedding is the query and it is left out of the results.
        code, found, _ = similar(capsys, str(excerpts[f"{style}-a"]), "--db", str(catalog))
        assert code == 0
        assert Path(found["results"][0]["file"]).name == f"{style}-b.flac"
        assert len(found["results"]) == 5
        similarities = [r["similarity"] for r in found["results"]]
        assert similarities == sorted(similarities, reverse=True)


def load_checkpoint_id() -> str:
    from app.pipeline.defaults import default_checkpoint_path

    return load_checkpoint(default_checkpoint_path()).model_id


def test_a_file_outside_the_catalogue_is_embedded_and_searched(
    catalog: Path, excerpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "query.flac"
    shutil.copyfile(excerpts["metal-b"], outside)
    code, found, _ = similar(capsys, str(outside), "--db", str(catalog), "--top", "2")
    assert code == 0
    assert found["query"] == {"file": str(outside)}
    assert Path(found["results"][0]["file"]).name == "metal-b.flac"
    assert found["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert len(found["results"]) == 2


def test_filters_on_tags_and_taxonomy(
    catalog: Path, excerpts: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    store = CatalogStore(catalog, readonly=True)
    names = [tag.name for tag in store.tags]
    by_file = {Path(t.path).stem: t for t in store.tracks(list(range(1, 100))).values()}
    query = by_file["orchestral-a"]
    # Every other track passes a floor below its own score and fails one above it.
    column = names.index("classical")
    floor = float(np.median([t.scores[column] for t in by_file.values()]))
    code, found, _ = similar(
        capsys, str(query.id), "--db", str(catalog), "--tag", "classical", "--min-score",
        f"{floor:.6f}",
    )  # fmt: skip
    assert code == 0
    expected = {s for s, t in by_file.items() if t.scores[column] >= floor and t.id != query.id}
    assert {Path(r["file"]).stem for r in found["results"]} == expected
    # Same best genre as the query.
    genres = [i for i, tag in enumerate(store.tags) if tag.category == "genre"]
    best = {s: genres[int(np.argmax(t.scores[genres]))] for s, t in by_file.items()}
    code, found, _ = similar(capsys, str(query.id), "--db", str(catalog), "--taxonomy", "genre")
    assert code == 0
    same = {s for s in by_file if best[s] == best["orchestral-a"] and s != "orchestral-a"}
    assert {Path(r["file"]).stem for r in found["results"]} == same


def test_bad_queries_say_what_is_wrong(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = similar(capsys, "999", "--db", str(catalog))
    assert code == 2
    assert "no track with id 999" in err
    code, _, err = similar(capsys, "1", "--db", str(catalog), "--tag", "bagpipes")
    assert code == 2
    assert "unknown tag 'bagpipes'" in err
    code, _, err = similar(capsys, "1", "--db", str(catalog), "--taxonomy", "colour")
    assert code == 2
    assert "unknown category 'colour'" in err
    code, _, err = similar(capsys, "1", "--db", str(catalog.parent / "none.db"))
    assert code == 2
    assert "no such catalogue" in err


def test_a_catalogue_of_another_model_refuses_queries_and_additions(
    catalog: Path, checkpoint: Path, excerpts: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    outside = tmp_path / "query.flac"
    shutil.copyfile(excerpts["techno-a"], outside)
    other = load_checkpoint(checkpoint).model_id
    code, _, err = similar(
        capsys, str(outside), "--db", str(catalog), "--checkpoint", str(checkpoint)
    )
    assert code == 2
    assert load_checkpoint_id() in err
    assert other in err
    copy = tmp_path / "copy.db"
    shutil.copyfile(catalog, copy)
    code = main(
        ["index", "build", str(outside), "--db", str(copy), "--checkpoint", str(checkpoint)]
    )
    assert code == 2
    assert other in capsys.readouterr().err


def test_incremental_builds_add_new_files_and_drop_removed_ones(
    excerpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    for name in ("techno-a", "techno-b", "metal-a"):
        shutil.copyfile(excerpts[name], folder / f"{name}.flac")
    database = tmp_path / "c.db"
    build = ["index", "build", str(folder), "--db", str(database), "--no-progress"]
    assert main(build) == 0
    assert "3 files to add, 0 unchanged" in capsys.readouterr().err
    first_ids = {
        t.path: t.id for t in CatalogStore(database, readonly=True).tracks(range(1, 20)).values()
    }
    shutil.copyfile(excerpts["metal-b"], folder / "metal-b.flac")
    assert main(build) == 0
    assert "1 files to add, 3 unchanged" in capsys.readouterr().err
    store = CatalogStore(database, readonly=True)
    kept = {t.path: t.id for t in store.tracks(range(1, 20)).values()}
    assert {p: kept[p] for p in first_ids} == first_ids  # the old tracks were not re-tagged
    (folder / "techno-a.flac").unlink()
    assert main([*build, "--prune"]) == 0
    assert "1 missing files dropped" in capsys.readouterr().err
    assert main(["index", "remove", str(folder / "metal-a.flac"), "--db", str(database)]) == 0
    left = {Path(t.path).name for t in store.tracks(range(1, 20)).values()}
    assert left == {"techno-b.flac", "metal-b.flac"}
    code = main(
        ["similar", str(folder / "metal-b.flac"), "--db", str(database), "--format", "json"]
    )
    assert code == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [Path(r["file"]).name for r in results] == ["techno-b.flac"]


def test_tag_writes_the_embedding_in_every_format(
    excerpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = str(excerpts["techno-a"])
    windows = 3  # 8 s in windows of 3.69 s
    out = tmp_path / "tags.jsonl"
    args = ["tag", file, "--embedding", "--segments", "--no-progress", "--output"]
    assert main([*args, str(out), "--format", "jsonl"]) == 0
    record = json.loads(out.read_text())
    vector = np.array(record["embedding"]["vector"])
    assert record["embedding"]["kind"] == "backbone-mean-max"
    assert record["embedding"]["dim"] == DIM
    assert vector.shape == (DIM,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
    assert len(record["segments"]) == windows
    assert all(len(s["embedding"]) == DIM for s in record["segments"])
    assert main([*args, str(tmp_path / "t.json"), "--format", "json"]) == 0
    document = json.loads((tmp_path / "t.json").read_text())
    assert document["files"][0]["embedding"]["vector"] == record["embedding"]["vector"]
    assert main([*args, str(tmp_path / "t.csv"), "--format", "csv"]) == 0
    rows = list(csv.reader((tmp_path / "t.csv").open()))
    assert rows[0][-1] == "embedding"
    assert len(rows) == 1 + 1 + windows
    assert len(rows[1][-1].split()) == DIM
    assert main(["tag", file, "--embedding", "--no-progress"]) == 0
    assert f"embedding {DIM}-d [" in capsys.readouterr().out
    assert main(["tag", file, "--no-progress", "--format", "jsonl"]) == 0
    assert "embedding" not in json.loads(capsys.readouterr().out)
