"""`tagger explain FILE --tag TAG --out map.png`: a real picture, and clear failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli.main import main
from model.checkpoint import save_checkpoint
from model.zoo import build_model
from tests.app.audio import encode

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_explain_writes_a_picture_and_json(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    track = tmp_path / "track.flac"
    track.write_bytes(encode("flac", 6.0))
    out, data = tmp_path / "map.png", tmp_path / "map.json"
    args = ["explain", str(track), "--tag", "piano", "--tag", "flute", "--out", str(out)]
    assert main([*args, "--json", str(data), "--checkpoint", str(checkpoint)]) == 0
    assert "wrote" in capsys.readouterr().out
    picture = out.read_bytes()
    assert picture.startswith(PNG_MAGIC)
    assert 10_000 < len(picture) < 1_000_000
    maps = json.loads(data.read_text())
    assert maps["method"] == "gradient"
    assert maps["duration_seconds"] == pytest.approx(6.0, abs=0.05)
    assert [m["tag"] for m in maps["maps"]] == ["piano", "flute"]
    assert len(maps["maps"][0]["values"]) == 16
    assert len(maps["maps"][0]["values"][0]) == 14  # 6 s in steps of 0.46 s
    assert len(maps["band_edges_hz"]) == 17


def test_explain_fails_clearly(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    track = tmp_path / "track.wav"
    track.write_bytes(encode("wav", 4.0))
    out = str(tmp_path / "map.png")
    base = ["explain", str(track), "--out", out, "--checkpoint", str(checkpoint)]
    assert main([*base, "--tag", "kazoo"]) == 2
    error = capsys.readouterr().err
    assert "unknown tag(s) 'kazoo'" in error
    assert "valid tags: guitar, classical" in error

    hcnn = save_checkpoint(tmp_path / "hcnn.safetensors", build_model("hcnn"), preset="hcnn")
    assert main([*base[:-1], str(hcnn), "--tag", "piano"]) == 2
    assert "hcnn model cannot be explained" in capsys.readouterr().err

    noise = tmp_path / "noise.mp3"
    noise.write_bytes(b"not audio at all" * 100)
    assert main(["explain", str(noise), "--tag", "piano", "--out", out]) == 1
    assert "noise.mp3" in capsys.readouterr().err
    assert not Path(out).exists()
