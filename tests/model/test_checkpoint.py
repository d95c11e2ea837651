"""Checkpoint round trips for every preset, and every way a checkpoint can be bad."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.checkpoint import (
    CheckpointError,
    _content_digest,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from model.tags import MTAT_TAGS, TWO_VOCABULARY_TAGS, custom_vocabulary
from model.zoo import PRESETS, build_model, config_for


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model("q2l-small").eval()
    path = tmp_path_factory.mktemp("ckpt") / "small.safetensors"
    return save_checkpoint(path, model, preset="q2l-small", provenance={"training_data": "none"})


def _rewrite(source: Path, target: Path, edit_document: Callable[[Any], None]) -> Path:
    """Copy a checkpoint with its metadata document edited and the digest recomputed."""
    with safe_open(str(source), framework="pt") as handle:
        document = json.loads(handle.metadata()["music_tagger"])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    edit_document(document)
    document.pop("content_sha256")
    document["content_sha256"] = _content_digest(document, tensors)
    save_file(tensors, str(target), metadata={"music_tagger": json.dumps(document)})
    return target


@pytest.mark.parametrize("preset", list(PRESETS))
def test_round_trip_for_every_preset(preset: str, tmp_path: Path) -> None:
    model = build_model(preset).eval()
    with torch.no_grad():  # make BN statistics non-trivial so buffers are really compared
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_()
    path = save_checkpoint(
        tmp_path / f"{preset}.safetensors", model, preset=preset, thresholds=[0.3] * 50
    )
    loaded = load_checkpoint(path)
    assert loaded.metadata.preset == preset
    assert loaded.metadata.thresholds == (0.3,) * 50
    assert loaded.metadata.tags == MTAT_TAGS
    assert not loaded.model.training
    original = model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        torch.testing.assert_close(tensor, original[name], rtol=0, atol=0)
    waveform = torch.randn(2, model.audio.window_samples)
    torch.testing.assert_close(loaded.model(waveform), model(waveform))


def test_mel_filterbank_is_stored_and_restored(small_checkpoint: Path) -> None:
    loaded = load_checkpoint(small_checkpoint)
    fb = loaded.model.state_dict()["frontend.spectrogram.mel_scale.fb"]
    assert fb.shape == (257, 128)
    assert fb.abs().sum() > 0


def test_metadata_carries_frontend_and_provenance(small_checkpoint: Path) -> None:
    metadata = read_metadata(small_checkpoint)
    assert metadata.frontend["audio"] == {"sample_rate": 16000, "window_samples": 59049}
    assert metadata.frontend["mel"]["n_mels"] == 128
    assert metadata.provenance["training_data"] == "none"
    assert {"code_version", "created"} <= set(metadata.provenance)


def test_custom_vocabulary_round_trips(tmp_path: Path) -> None:
    tags = custom_vocabulary(["piano", "lo-fi", "field recording"])
    model = build_model("q2l-small", config_for("q2l-small", {"n_classes": 3}))
    path = save_checkpoint(tmp_path / "own.safetensors", model, preset="q2l-small", tags=tags)
    loaded = load_checkpoint(path)
    assert [t.name for t in loaded.metadata.tags] == ["piano", "lo-fi", "field recording"]
    assert [t.category for t in loaded.metadata.tags] == ["instrument", "other", "other"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(small_checkpoint: Path, tmp_path: Path) -> None:
    data = small_checkpoint.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(truncated)


def test_random_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01 not a checkpoint" * 100)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(junk)


def test_plain_safetensors_without_our_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="without music-tagger metadata"):
        load_checkpoint(path)


def test_tampered_weights(small_checkpoint: Path, tmp_path: Path) -> None:
    data = bytearray(small_checkpoint.read_bytes())
    data[-100] ^= 0xFF  # inside the last tensor's bytes
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="content digest mismatch"):
        load_checkpoint(tampered)


def test_tampered_metadata(small_checkpoint: Path, tmp_path: Path) -> None:
    with safe_open(str(small_checkpoint), framework="pt") as handle:
        document = json.loads(handle.metadata()["music_tagger"])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    document["thresholds"][0] = 0.01  # edited by hand, digest left as it was
    path = tmp_path / "edited.safetensors"
    save_file(tensors, str(path), metadata={"music_tagger": json.dumps(document)})
    with pytest.raises(CheckpointError, match="content digest mismatch"):
        load_checkpoint(path)


def test_wrong_tag_count(small_checkpoint: Path, tmp_path: Path) -> None:
    def drop_a_tag(document: dict[str, list[object]]) -> None:
        document["tags"].pop()

    path = _rewrite(small_checkpoint, tmp_path / "tags.safetensors", drop_a_tag)
    with pytest.raises(CheckpointError, match="49 tags for a model with 50 outputs"):
        load_checkpoint(path)


def test_unknown_preset(small_checkpoint: Path, tmp_path: Path) -> None:
    def rename(document: dict[str, object]) -> None:
        document["preset"] = "q2l-giant"

    path = _rewrite(small_checkpoint, tmp_path / "preset.safetensors", rename)
    with pytest.raises(CheckpointError, match="unknown preset 'q2l-giant'"):
        load_checkpoint(path)


def test_weights_of_another_shape(small_checkpoint: Path, tmp_path: Path) -> None:
    def claim_base(document: dict[str, object]) -> None:
        base = build_model("q2l-base").config
        from model.config import config_to_dict

        document["preset"] = "q2l-base"
        document["config"] = config_to_dict(base)

    path = _rewrite(small_checkpoint, tmp_path / "shapes.safetensors", claim_base)
    with pytest.raises(
        CheckpointError, match="weights do not fit the q2l-base config: wrong shapes"
    ):
        load_checkpoint(path)


def test_unsupported_format_version(small_checkpoint: Path, tmp_path: Path) -> None:
    def bump(document: dict[str, object]) -> None:
        document["format_version"] = 99

    path = _rewrite(small_checkpoint, tmp_path / "version.safetensors", bump)
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_checkpoint(path)


def test_thresholds_out_of_range(small_checkpoint: Path, tmp_path: Path) -> None:
    def bad_threshold(document: dict[str, list[float]]) -> None:
        document["thresholds"][2] = 1.5

    path = _rewrite(small_checkpoint, tmp_path / "thr.safetensors", bad_threshold)
    with pytest.raises(CheckpointError, match=r"thresholds must lie in \[0, 1\]"):
        load_checkpoint(path)


def test_saving_with_the_wrong_preset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a rescnn model"):
        save_checkpoint(tmp_path / "x.safetensors", build_model("rescnn"), preset="q2l-small")


@pytest.fixture(scope="module")
def two_vocabulary_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model("q2l-small", config_for("q2l-small", {"n_classes": 100})).eval()
    path = tmp_path_factory.mktemp("two") / "two.safetensors"
    return save_checkpoint(path, model, preset="q2l-small", tags=TWO_VOCABULARY_TAGS)


def test_taxonomies_round_trip(two_vocabulary_checkpoint: Path) -> None:
    tags = load_checkpoint(two_vocabulary_checkpoint).metadata.tags
    assert len(tags) == 100
    assert [tag.taxonomy for tag in tags] == ["mtt"] * 50 + ["msd"] * 50
    ids = [tag.id for tag in tags]
    assert ids[:2] == ["mtt/guitar", "mtt/classical"]
    assert ids[50:52] == ["msd/rock", "msd/pop"]
    assert "mtt/rock" in ids
    female = next(tag for tag in tags if tag.id == "msd/female vocalists")
    assert (female.category, female.synonym_group) == ("vocal", "female")
    assert next(tag for tag in tags if tag.id == "msd/80s").category == "era"


def test_taxonomy_is_stored_per_tag_in_the_file(two_vocabulary_checkpoint: Path) -> None:
    with safe_open(str(two_vocabulary_checkpoint), framework="pt") as handle:
        document = json.loads(handle.metadata()["music_tagger"])
    assert document["tags"][0] == {
        "name": "guitar",
        "category": "instrument",
        "synonym_group": "guitar",
        "taxonomy": "mtt",
    }
    assert document["tags"][50]["taxonomy"] == "msd"


def test_a_single_vocabulary_file_stores_no_taxonomy(small_checkpoint: Path) -> None:
    with safe_open(str(small_checkpoint), framework="pt") as handle:
        document = json.loads(handle.metadata()["music_tagger"])
    assert all("taxonomy" not in tag for tag in document["tags"])
    assert [tag.taxonomy for tag in read_metadata(small_checkpoint).tags] == [None] * 50


def test_repeated_ids_are_refused(two_vocabulary_checkpoint: Path, tmp_path: Path) -> None:
    def same_taxonomy(document: dict[str, list[dict[str, str]]]) -> None:
        for tag in document["tags"]:
            tag["taxonomy"] = "mtt"  # both rocks become mtt/rock

    path = _rewrite(two_vocabulary_checkpoint, tmp_path / "ids.safetensors", same_taxonomy)
    with pytest.raises(CheckpointError, match=r"invalid vocabulary: tag ids must be unique.*rock"):
        load_checkpoint(path)


def test_taxonomy_on_some_tags_only_is_refused(
    two_vocabulary_checkpoint: Path, tmp_path: Path
) -> None:
    def drop_one(document: dict[str, list[dict[str, str]]]) -> None:
        del document["tags"][3]["taxonomy"]

    path = _rewrite(two_vocabulary_checkpoint, tmp_path / "mixed.safetensors", drop_one)
    with pytest.raises(CheckpointError, match="either every tag has a taxonomy or none does"):
        load_checkpoint(path)


def test_malformed_taxonomy_is_refused(two_vocabulary_checkpoint: Path, tmp_path: Path) -> None:
    def shout(document: dict[str, list[dict[str, str]]]) -> None:
        document["tags"][0]["taxonomy"] = "MTT/x"

    path = _rewrite(two_vocabulary_checkpoint, tmp_path / "bad.safetensors", shout)
    with pytest.raises(CheckpointError, match="invalid metadata: taxonomy of tag 'guitar'"):
        load_checkpoint(path)


def test_saving_a_vocabulary_with_repeated_names_is_refused(tmp_path: Path) -> None:
    model = build_model("q2l-small", config_for("q2l-small", {"n_classes": 100}))
    unqualified = tuple(
        tag.__class__(tag.name, tag.category, tag.synonym_group) for tag in TWO_VOCABULARY_TAGS
    )
    with pytest.raises(CheckpointError, match="tag ids must be unique"):
        save_checkpoint(tmp_path / "x.safetensors", model, preset="q2l-small", tags=unqualified)
