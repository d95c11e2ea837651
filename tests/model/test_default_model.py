"""The bundled default checkpoint tags real music sensibly.

The music is fetched from Debian's archive in the test setup (scripts/fetch_music.py: apt-get
download + dpkg-deb, into the git-ignored data/music); without apt the tests skip with a clear
message, except in CI, where they fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.audio.decode import decode_audio
from model.checkpoint import Checkpoint, load_checkpoint
from model.inference import predict_track

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "model" / "weights" / "default.safetensors"


@pytest.fixture(scope="module")
def default_model() -> Checkpoint:
    return load_checkpoint(DEFAULT)


def _track_scores(checkpoint: Checkpoint, path: Path) -> dict[str, float]:
    audio = decode_audio(path, sample_rate=checkpoint.model.audio.sample_rate)
    result = predict_track(checkpoint.model, torch.from_numpy(audio.samples), batch_size=16)
    names = [tag.name for tag in checkpoint.metadata.tags]
    return dict(zip(names, result.track_scores.tolist(), strict=True))


def _top(scores: dict[str, float], k: int) -> list[str]:
    return sorted(scores, key=scores.__getitem__, reverse=True)[:k]


def test_techno_track_scores_techno_above_classical(music: Path, default_model: Checkpoint) -> None:
    scores = _track_scores(default_model, music / "nexuiz-music" / "brainsukker.ogg")
    assert max(scores["techno"], scores["electronic"]) > scores["classical"], _top(scores, 8)


def test_orchestral_track_scores_classical_above_techno(
    music: Path, default_model: Checkpoint
) -> None:
    scores = _track_scores(default_model, music / "wesnoth-1.16-music" / "traveling_minstrels.ogg")
    assert max(scores["classical"], scores["strings"]) > scores["techno"], _top(scores, 8)


def test_metal_song_has_rock_or_metal_in_its_top_five(
    music: Path, default_model: Checkpoint
) -> None:
    scores = _track_scores(
        default_model, music / "fretsonfire-songs-muldjord" / "chaos_god" / "mix.flac"
    )
    assert {"rock", "metal"} & set(_top(scores, 5)), _top(scores, 8)


def test_rendered_piano_piece_has_piano_in_its_top_three(default_model: Checkpoint) -> None:
    render = pytest.importorskip("training.distill.render", reason="needs the train extra")
    # Joplin's Maple Leaf Rag: its piece is in the held-out test split of the default model.
    assert render.split_of("joplin/maple_leaf_rag.mxl") == "test"
    score = render.load_score("joplin/maple_leaf_rag.mxl")
    rendering = render.render_score(score, [0] * len(score.parts), max_seconds=30.0)
    result = predict_track(default_model.model, torch.from_numpy(rendering.samples))
    names = [tag.name for tag in default_model.metadata.tags]
    scores = dict(zip(names, result.track_scores.tolist(), strict=True))
    assert "piano" in _top(scores, 3), _top(scores, 8)
