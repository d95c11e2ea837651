"""`tagger teach` and `tagger retrain` on real music, `tagger tag --tag-sets`, and every kind
of bad input they refuse."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from app.cli.main import main
from app.teach.features import file_sha256
from model.checkpoint import load_checkpoint
from model.tagset import load_tag_set, save_tag_set
from tests.app.teach.conftest import ROOT, V1, Taught, teach

V2 = ROOT / "model" / "weights" / "default.safetensors"


def test_teach_writes_a_tag_set_with_its_measured_quality(taught: Taught, examples: Path) -> None:
    tag_set = load_tag_set(taught.path)
    assert [t.tag.id for t in tag_set.tags] == ["custom/orchestral", "custom/techno"]  # by folder
    assert tag_set.name == "styles"
    assert tag_set.base.sha256 == load_checkpoint(V1).sha256
    for tag in tag_set.tags:
        quality = tag.quality
        assert quality["positives"] == 6
        assert quality["negatives"] == 6
        assert quality["folds"] == 3
        assert len(quality["query"]["roc_auc_folds"]) == 3
        assert len(quality["probe"]["pr_auc_folds"]) == 3
        # Two very different styles: both scorers separate them on held-out tracks.
        assert quality["query"]["roc_auc_mean"] > 0.9
        assert quality["probe"]["roc_auc_mean"] > 0.9
        better = max(("query", "probe"), key=lambda s: quality[s]["roc_auc_mean"])
        if quality["query"]["roc_auc_mean"] != quality["probe"]["roc_auc_mean"]:
            assert tag.scorer == better
        assert 0.0 < tag.threshold < 1.0
        assert any("only 6 positive tracks" in w for w in quality["warnings"])
    recorded = {Path(e["path"]).name: e for e in tag_set.examples}
    assert len(recorded) == 12
    first = next(examples.glob("techno/*.flac"))
    assert recorded[first.name]["sha256"] == file_sha256(first)
    assert recorded[first.name]["positive"] == ["techno"]
    assert taught.report["techno"]["query"] == tag_set.tags[1].quality["query"]
    assert "custom/techno" in taught.stdout
    assert "warning: only 6 positive" in taught.stdout


def test_teaching_again_reuses_the_cache(
    taught: Taught, examples: Path, teach_cache: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "again.safetensors"
    assert teach(examples, "--output", out, "--seed", "1", cache=teach_cache) == 0
    assert "computed for 0" in capsys.readouterr().err


def test_tag_shows_taught_tags_in_every_format(
    taught: Taught, examples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(next(examples.glob("techno/*.flac"))), str(next(examples.glob("orchestral/*")))]
    common = ["--checkpoint", str(V1), "--tag-sets", str(taught.path.parent), "--no-progress"]
    out = tmp_path / "tags.json"
    assert main(["tag", *files, *common, "-f", "json", "-o", str(out), "-k", "52"]) == 0
    records = sorted(json.loads(out.read_text())["files"], key=lambda r: "orchestral" in r["file"])
    for record, style in zip(records, ("techno", "orchestral"), strict=True):
        by_id = {t["tag"]: t for t in record["tags"]}
        assert {"custom/techno", "custom/orchestral", "guitar"} <= by_id.keys()
        assert by_id[f"custom/{style}"]["taxonomy"] == "custom"
        other = "orchestral" if style == "techno" else "techno"
        assert by_id[f"custom/{style}"]["score"] > by_id[f"custom/{other}"]["score"]
    table = tmp_path / "tags.csv"
    assert main(["tag", *files, *common, "-f", "csv", "-o", str(table)]) == 0
    with table.open() as handle:
        header = next(csv.reader(handle))
    assert "custom/techno" in header
    assert "custom/orchestral" in header
    capsys.readouterr()
    assert main(["tag", files[0], *common, "-f", "table", "-k", "52"]) == 0
    assert "custom/techno" in capsys.readouterr().out


def test_tag_refuses_a_tag_set_of_another_base(
    taught: Taught, examples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = str(next(examples.glob("techno/*.flac")))
    code = main(["tag", file, "--checkpoint", str(V2), "--tag-sets", str(taught.path)])
    assert code == 2
    error = capsys.readouterr().err
    assert "tag set 'styles' was taught on q2l-small@" in error
    assert "tagger retrain" in error


def test_retrain_rebuilds_the_set_for_a_new_base(
    taught: Taught, teach_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "styles-v2.safetensors"
    args = ["retrain", str(taught.path), "-o", str(out), "--checkpoint", str(V2)]
    assert main([*args, "--cache", str(teach_cache), "--folds", "3", "--query-steps", "25",
                 "--no-progress"]) == 0  # fmt: skip
    rebuilt, old = load_tag_set(out), load_tag_set(taught.path)
    assert rebuilt.base.sha256 == load_checkpoint(V2).sha256
    assert [t.tag.id for t in rebuilt.tags] == [t.tag.id for t in old.tags]
    assert rebuilt.examples == old.examples


def test_retrain_finds_moved_examples_by_content(
    taught: Taught, examples: Path, teach_cache: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    moved = tmp_path / "moved"
    shutil.copytree(examples, moved / "elsewhere")
    old = load_tag_set(taught.path)
    relocated = tmp_path / "relocated.safetensors"
    # A set whose recorded paths no longer exist: rewrite them to a missing folder.
    gone = tuple({**e, "path": str(tmp_path / "gone" / Path(e["path"]).name)} for e in old.examples)
    save_tag_set(relocated, dataclasses.replace(old, examples=gone))
    out = tmp_path / "out.safetensors"
    base = [
        "retrain", str(relocated), "-o", str(out), "--checkpoint", str(V1),
        "--cache", str(teach_cache), "--folds", "3", "--query-steps", "5", "--no-progress",
    ]  # fmt: skip
    assert main(base) == 2
    assert "recorded example not found (use --root)" in capsys.readouterr().err
    assert main([*base, "--root", str(moved)]) == 0


def _refusal(capsys: pytest.CaptureFixture[str], code: int) -> str:
    assert code == 2
    error = capsys.readouterr().err
    assert "cannot teach" in error
    return error


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def test_one_positive_is_refused(
    examples: Path, teach_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ex"
    _link(next(examples.glob("techno/*.flac")), root / "techno" / "a.flac")
    for i, file in enumerate(sorted(examples.glob("orchestral/*.flac"))[:3]):
        _link(file, root / "orchestral" / f"{i}.flac")
    error = _refusal(capsys, teach(root, "-o", tmp_path / "x.safetensors", cache=teach_cache))
    assert "tag 'techno': 1 positive example(s); at least 2 are needed" in error
    assert not (tmp_path / "x.safetensors").exists()


def test_no_negatives_are_refused(
    examples: Path, teach_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ex"
    for i, file in enumerate(sorted(examples.glob("techno/*.flac"))[:3]):
        _link(file, root / "techno" / f"{i}.flac")
    error = _refusal(capsys, teach(root, "-o", tmp_path / "x.safetensors", cache=teach_cache))
    assert "tag 'techno': no negative examples" in error


def test_undecodable_examples_are_listed_not_dropped(
    examples: Path, teach_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ex"
    shutil.copytree(examples, root)
    (root / "techno" / "broken.mp3").write_bytes(b"this is not audio at all" * 100)
    (root / "orchestral" / "empty.flac").write_bytes(b"")
    error = _refusal(capsys, teach(root, "-o", tmp_path / "x.safetensors", cache=teach_cache))
    assert "cannot use 2 example file(s)" in error
    assert "broken.mp3" in error
    assert "empty.flac" in error


def test_a_bad_csv_is_refused_with_its_lines(
    examples: Path, teach_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "examples.csv"
    good = next(examples.glob("techno/*.flac"))
    table.write_text(f"file,tags,group\n{good},techno,a\n{good}\n{good},,b\n#3,techno\n")
    error = _refusal(capsys, teach(table, "-o", tmp_path / "x.safetensors", cache=teach_cache))
    assert "line 3: expected file,tags[,group], got 1 fields" in error
    assert "line 4: no tags" in error
    assert "line 5: #3 names a catalogue track: pass --db" in error


def test_missing_examples_and_bad_options_are_refused(
    examples: Path, teach_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["-o", str(tmp_path / "x.safetensors")]
    _refusal(capsys, teach(tmp_path / "nothing.csv", *out, cache=teach_cache))
    _refusal(capsys, teach(tmp_path, *out, cache=teach_cache))  # a folder without tag folders
    error = _refusal(capsys, teach(examples, *out, "--draw-negatives", "5", cache=teach_cache))
    assert "--draw-negatives needs --db or --pool" in error
    error = _refusal(capsys, teach(examples, *out, "--category", "techno=loud", cache=teach_cache))
    assert "category must be one of" in error


def test_csv_with_groups_and_explicit_negatives(
    examples: Path, teach_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV with a group column: tracks of a group are never split (here each style's
    tracks come in three albums of two), explicit negatives count for their tag only."""
    techno = sorted(examples.glob("techno/*.flac"))
    orchestral = sorted(examples.glob("orchestral/*.flac"))
    rows = [f"{f},techno,t{i // 2}" for i, f in enumerate(techno)]
    rows += [f"{f},!techno,o{i // 2}" for i, f in enumerate(orchestral)]
    table = tmp_path / "examples.csv"
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "grouped.safetensors"
    assert teach(table, "-o", out, "--category", "techno=genre", cache=teach_cache) == 0
    tag = load_tag_set(out).tags[0]
    assert tag.tag.id == "custom/techno"
    assert tag.tag.category == "genre"
    assert tag.quality["folds"] == 3  # three groups of each side
    assert tag.quality["positives"] == 6
    assert tag.quality["negatives"] == 6


def test_tags_lists_taught_tags(taught: Taught, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["tags", "--checkpoint", str(V1), "--tag-sets", str(taught.path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("with 2 taught tags, by taxonomy and category")
    assert lines[2].startswith("1\tclassical\tgenre")  # the base tags first, by bare name
    assert lines[-1].startswith("51\tcustom/techno\tother\ttechno\t")
    assert main(["tags", "--checkpoint", str(V2), "--tag-sets", str(taught.path)]) == 2
    assert "was taught on" in capsys.readouterr().err
