"""The beets plugin in a real beets library (beets from PyPI, the `beets` extra): `beet import`
of real music without autotagging, `beet musictagger` in this process and through a running
service, range queries on the fields, file tags written by beets' `write` and read back, and
tagging on import (beetsplug/musictagger.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.cli.main import main
from tests.app.library.music import decoded
from tests.app.library.readback import DEFAULT_MODEL, read_raw
from tests.app.servers import ServiceProcess

ROOT = Path(__file__).resolve().parents[3]
FIELDS = ("title", "tagger_genre", "tagger_model", "mood_relaxed", "voice_instrumental")


@pytest.fixture(scope="module", autouse=True)
def beets_installed() -> None:
    try:
        import beets  # noqa: F401
    except ImportError:
        message = "beets is not installed: pip install '.[beets]' (make install does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


class Beets:
    """A beets library in a folder: its config, database, and the `beet` command."""

    def __init__(self, folder: Path, plugin_config: dict[str, object]) -> None:
        self.folder = folder
        (folder / "config").mkdir(parents=True)
        config = {
            "directory": str(folder / "music"),
            "library": str(folder / "library.db"),
            "plugins": "musictagger",
            "import": {"copy": False, "move": False, "write": False},
            "musictagger": plugin_config,
        }
        # JSON is YAML: no YAML writer needed for the config.
        (folder / "config" / "config.yaml").write_text(json.dumps(config, indent=2))

    def __call__(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        environment = {
            **os.environ,
            "BEETSDIR": str(self.folder / "config"),
            "PYTHONPATH": str(ROOT),
        }
        return subprocess.run(
            [sys.executable, "-m", "beets", *arguments],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=environment,
            timeout=300,
        )

    def ok(self, *arguments: str) -> str:
        result = self(*arguments)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result.stdout + result.stderr

    def paths(self, *query: str) -> set[str]:
        return {Path(line).name for line in self.ok("ls", "-p", *query).splitlines() if line}

    def fields(self) -> dict[str, dict[str, str]]:
        """file name -> FIELDS as beets formats them (`$field` where unset)."""
        template = "\t".join(["$path", *(f"${name}" for name in FIELDS)])
        rows = {}
        for line in self.ok("ls", "-f", template).splitlines():
            path, *values = line.split("\t")
            rows[Path(path).name] = dict(zip(FIELDS, values, strict=True))
        return rows


def music_folder(folder: Path, pristine: dict[str, Path], formats: tuple[str, ...]) -> Path:
    folder.mkdir()
    for fmt in formats:
        shutil.copy2(pristine[fmt], folder / pristine[fmt].name)
    return folder


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory, pristine: dict[str, Path]) -> Beets:
    """A library of the five real-music files, imported and tagged in this process."""
    folder = tmp_path_factory.mktemp("beets")
    music = music_folder(folder / "in", pristine, ("mp3", "flac", "ogg", "opus", "m4a"))
    beet = Beets(folder, {"genres": True})
    beet.ok("import", "-A", "-q", str(music))
    output = beet.ok("musictagger")
    assert "tagged 5 of 5 items" in output
    return beet


def test_items_get_our_fields_and_can_be_queried_by_them(tagged: Beets) -> None:
    rows = tagged.fields()
    assert set(rows) == {
        "metal.ogg",
        "orchestral.flac",
        "orchestral.m4a",
        "techno.mp3",
        "techno.opus",
    }
    assert {row["tagger_model"] for row in rows.values()} == {DEFAULT_MODEL}
    assert rows["metal.ogg"]["tagger_genre"] == "rock; metal"
    assert tagged.paths("tagger_genre:classical") == {"orchestral.flac", "orchestral.m4a"}
    assert tagged.paths("tagger_genre:electronic") == {"techno.mp3", "techno.opus"}
    # voice_instrumental is set only where the model decides; never an invented value.
    assert {row["voice_instrumental"] for row in rows.values()} <= {
        "voice", "instrumental", "$voice_instrumental"
    }  # fmt: skip


def test_acousticbrainz_fields_are_numbers_for_range_queries(tagged: Beets) -> None:
    values = {name: float(row["mood_relaxed"]) for name, row in tagged.fields().items()}
    assert all(0.0 <= value <= 1.0 for value in values.values())
    assert len(set(values.values())) > 1
    cut = (min(values.values()) + max(values.values())) / 2
    above = {name for name, value in values.items() if value >= cut}
    assert tagged.paths(f"mood_relaxed:{cut:.6f}..") == above
    assert tagged.paths(f"mood_relaxed:..{cut:.6f}") == set(values) - above


def test_a_rerun_skips_and_write_puts_the_tags_into_the_files(
    tagged: Beets, tmp_path: Path
) -> None:
    assert "5 items already tagged with these settings" in tagged.ok("musictagger")
    folder = tagged.folder / "in"
    samples = {p.name: decoded(p) for p in folder.iterdir()}

    tagged.ok("musictagger", "--force", "--write")

    for path in folder.iterdir():
        tags = read_raw(path)
        ours = tagged.fields()[path.name]["tagger_genre"].split("; ")
        assert tags["genre"] == ["Game", *ours], path.name  # beets' genres: merged, written
        assert tags["record"]["model_id"] == DEFAULT_MODEL
        assert tags["record"]["written"]["genre"] == ours
        assert np.array_equal(decoded(path), samples[path.name])
    # What beets wrote, `tagger strip-tags` takes out again.
    assert main(["strip-tags", str(folder)]) == 0
    assert all(read_raw(path)["genre"] == ["Game"] for path in folder.iterdir())


def test_auto_tags_items_on_import(tmp_path: Path, pristine: dict[str, Path]) -> None:
    music = music_folder(tmp_path / "in", pristine, ("flac",))
    beet = Beets(tmp_path, {"auto": True})
    beet.ok("import", "-A", "-q", str(music))
    assert beet.fields()["orchestral.flac"]["tagger_genre"] == "classical"
    assert read_raw(music / "orchestral.flac")["record"] is None  # write: no (the default)


def test_a_running_service_tags_the_items(
    tmp_path: Path, pristine: dict[str, Path], server: ServiceProcess
) -> None:
    """`url:` sends the files to `POST /tag` of a real service (here with the test suite's
    untrained 50-tag MagnaTagATune checkpoint, so the fields say which model scored)."""
    import httpx

    model_id = httpx.get(f"{server.url}/model").json()["model_id"]
    music = music_folder(tmp_path / "in", pristine, ("mp3", "ogg"))
    beet = Beets(tmp_path, {"url": server.url})
    beet.ok("import", "-A", "-q", str(music))
    beet.ok("musictagger")
    rows = beet.fields()
    assert {row["tagger_model"] for row in rows.values()} == {model_id}
    record = json.loads(beet.ok("ls", "-f", "$tagger_record", "techno").strip())
    assert len(record["scores"]) == 50  # every tag of that model
    # An MTT-only model fills only the AcousticBrainz fields it has tags for.
    assert beet.paths("mood_happy::.") == set()
    assert beet.paths("danceable::.") == {"techno.mp3", "metal.ogg"}
    # An item whose file is gone: a message naming it, the others still tagged, exit code 1.
    (music / "metal.ogg").unlink()
    result = beet("musictagger", "--force")
    assert result.returncode == 1
    assert "metal.ogg" in result.stderr
    assert "cannot read the file" in result.stderr
    assert "1 of 2 items failed" in result.stderr


def test_beet_import_reads_what_tagger_write_tags_wrote(
    tmp_path: Path, pristine: dict[str, Path]
) -> None:
    music = music_folder(tmp_path / "in", pristine, ("opus",))
    # A low threshold, so that moods are written too (the default model rarely passes its own).
    assert main(["write-tags", str(music), "--threshold", "0.02", "--no-progress"]) == 0
    written = read_raw(music / "techno.opus")
    assert written["mood"]
    beet = Beets(tmp_path, {})
    beet.ok("import", "-A", "-q", str(music))
    assert beet.ok("ls", "-f", "$mood").strip() == "; ".join(written["mood"])
    assert json.loads(beet.ok("ls", "-f", "$tagger_record").strip()) == written["record"]
