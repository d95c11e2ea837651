"""The pipeline steps as `python -m training` subcommands: each step's own options come through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("step", "option"),
    [
        ("fetch-music", "--apt-update"),
        ("render", "--pieces"),
        ("label", "--rendered"),
        ("report", "--student"),
    ],
)
def test_a_step_shows_its_own_options(
    step: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([step, "--help"])
    assert exit_info.value.code == 0
    assert option in capsys.readouterr().out


def test_the_top_level_help_lists_every_command() -> None:
    text = build_parser().format_help()
    for command in (
        "prepare-mtat",
        "prepare-manifest",
        "prepare-distill",
        "train",
        "evaluate",
        "export",
        "compare",
        "fetch-music",
        "render",
        "label",
        "report",
    ):
        assert command in text


def test_a_step_passes_bad_arguments_to_the_step(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["render", "--pieces", "many"])
    assert exit_info.value.code == 2
    assert "--pieces: invalid int value: 'many'" in capsys.readouterr().err


def test_the_fetch_music_script_still_runs() -> None:
    # tests/model/conftest.py and the CI call the script, not the subcommand.
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_music.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0
    assert "--packages" in done.stdout
