"""Two vocabularies in `tagger tags`, `tagger tag` and `tagger explain`: tags named by id, one
taxonomy selected with --taxonomy, each synonym group once unless --synonyms all, on a real
100-tag q2l-small checkpoint (random weights) and real encoded audio."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from app.cli.main import main
from tests.app.audio import encode
from tests.app.conftest import MSD_ROCK_THRESHOLD

EXIT_CANNOT_START = 2


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.ogg"
    path.write_bytes(encode("ogg", 6.0))
    return path


def _tag(checkpoint: Path, clip: Path, out: Path, *options: str) -> int:
    base = ["tag", str(clip), "--checkpoint", str(checkpoint), "--precision", "fp32"]
    return main([*base, "--no-progress", "--output", str(out), *options])


def test_tags_lists_both_vocabularies_grouped(
    two_vocabulary_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tags", "--checkpoint", str(two_vocabulary_checkpoint), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [group["taxonomy"] for group in listing["taxonomies"]] == ["mtt", "msd"]
    assert listing["tags"][50]["id"] == "msd/rock"
    assert listing["tags"][50]["threshold"] == MSD_ROCK_THRESHOLD

    assert main(["tags", "--checkpoint", str(two_vocabulary_checkpoint), "--taxonomy", "msd"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# 50 tags of ")
    assert lines[1] == "index\tid\tcategory\tsynonym_group\tthreshold"
    assert lines[2] == f"50\tmsd/rock\tgenre\trock\t{MSD_ROCK_THRESHOLD:.3f}"
    categories = [line.split("\t")[2] for line in lines[2:]]
    # Grouped: each category's tags together, in the documented order.
    assert list(dict.fromkeys(categories)) == ["genre", "era", "mood", "instrument", "vocal"]
    assert len(lines) == 2 + 50


def test_tags_refuses_an_unknown_taxonomy(
    two_vocabulary_checkpoint: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["tags", "--checkpoint", str(two_vocabulary_checkpoint), "--taxonomy", "lastfm"]
    assert main(args) == 2
    assert "unknown taxonomy 'lastfm'; this model's taxonomies are mtt, msd" in (
        capsys.readouterr().err
    )
    assert main(["tags", "--checkpoint", str(checkpoint), "--taxonomy", "mtt"]) == 2
    assert "has no taxonomies" in capsys.readouterr().err


def test_tag_records_name_tags_by_id_once_per_group(
    two_vocabulary_checkpoint: Path, clip: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tags.jsonl"
    assert _tag(two_vocabulary_checkpoint, clip, out, "--format", "jsonl", "-k", "100") == 0
    tags = json.loads(out.read_text())["tags"]
    assert len(tags) == 71  # the synonym groups of the two vocabularies
    assert len({t["synonym_group"] for t in tags}) == 71
    assert all(t["tag"] == f"{t['taxonomy']}/" + t["tag"].split("/", 1)[1] for t in tags)

    out = tmp_path / "all.json"
    assert (
        _tag(
            two_vocabulary_checkpoint,
            clip,
            out,
            "--format",
            "json",
            "-k",
            "100",
            "--synonyms",
            "all",
        )
        == 0
    )
    tags = json.loads(out.read_text())["files"][0]["tags"]
    assert len(tags) == 100
    assert Counter(t["synonym_group"] for t in tags)["female"] == 6
    assert {"mtt/rock", "msd/rock"} <= {t["tag"] for t in tags}


def test_tag_csv_of_one_taxonomy(
    two_vocabulary_checkpoint: Path, clip: Path, tmp_path: Path
) -> None:
    out = tmp_path / "msd.csv"
    assert _tag(two_vocabulary_checkpoint, clip, out, "--format", "csv", "--taxonomy", "msd") == 0
    with out.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, row = rows
    score_columns = header[header.index("error") + 1 :]
    assert len(score_columns) == 50
    assert score_columns[:3] == ["msd/rock", "msd/pop", "msd/alternative"]
    top = row[header.index("top_tags")].split(";")
    assert len(top) == 10
    assert all(name.startswith("msd/") for name in top)


def test_tag_refuses_an_unknown_taxonomy(
    two_vocabulary_checkpoint: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.json"
    assert _tag(two_vocabulary_checkpoint, clip, out, "--taxonomy", "lastfm") == EXIT_CANNOT_START
    assert "unknown taxonomy 'lastfm'; this model's taxonomies are mtt, msd" in (
        capsys.readouterr().err
    )
    assert _tag(two_vocabulary_checkpoint, clip, out, "--taxonomy", "msd", "-k", "51") == (
        EXIT_CANNOT_START
    )
    assert "--top-k must be between 1 and 50 (msd's tags), got 51" in capsys.readouterr().err


def test_explain_takes_ids_and_the_taxonomy(
    two_vocabulary_checkpoint: Path, clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, data = tmp_path / "map.png", tmp_path / "map.json"
    base = ["explain", str(clip), "--out", str(out), "--checkpoint", str(two_vocabulary_checkpoint)]
    assert main([*base, "--tag", "rock"]) == 2
    assert "'rock' is ambiguous: it names mtt/rock, msd/rock" in capsys.readouterr().err
    assert (
        main(
            [*base, "--tag", "rock", "--taxonomy", "msd", "--tag", "mtt/piano", "--json", str(data)]
        )
        == 0
    )
    assert "gradient evidence for msd/rock, mtt/piano" in capsys.readouterr().out
    assert [m["tag"] for m in json.loads(data.read_text())["maps"]] == ["msd/rock", "mtt/piano"]
