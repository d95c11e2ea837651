"""Tag sets: the file format, the binding to one base model, and the base model's scores left
bit-identical on real music when a set's tags are added."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.audio.decode import decode_audio
from model.checkpoint import Checkpoint, load_checkpoint
from model.inference import split_windows
from model.q2l import Query2Label
from model.runtime import Runtime, RuntimeOptions
from model.tags import Tag
from model.tagset import (
    BaseBinding,
    TaggedModel,
    TagSet,
    TagSetError,
    TaughtTag,
    extend_checkpoint,
    find_tag_sets,
    load_tag_set,
    save_tag_set,
)

WEIGHTS = Path(__file__).resolve().parents[2] / "model" / "weights"


@pytest.fixture(scope="module")
def v1() -> Checkpoint:
    return load_checkpoint(WEIGHTS / "default-v1.safetensors")


def _tag_set(
    checkpoint: Checkpoint,
    names: tuple[str, ...] = ("jazz", "calm"),
    scorers: tuple[str, ...] = ("query", "probe"),
    taxonomy: str = "custom",
    seed: int = 0,
) -> TagSet:
    model = checkpoint.model
    assert isinstance(model, Query2Label)
    generator = torch.Generator().manual_seed(seed)
    count, width = len(names), model.config.d_model

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return TagSet(
        name="test",
        taxonomy=taxonomy,
        base=BaseBinding.of(checkpoint),
        tags=tuple(
            TaughtTag(Tag(n, "mood", n, taxonomy), s, 0.25, {"roc_auc": 0.9})  # type: ignore[arg-type]
            for n, s in zip(names, scorers, strict=True)
        ),
        queries=random(count, width),
        query_rows=random(count, width) / 16,
        query_biases=random(count),
        probe_weights=random(count, model.embedding_dim),
        probe_biases=random(count),
        examples=({"path": "jazz/a.ogg", "sha256": "ab" * 32, "positive": ["jazz"]},),
    )


def test_a_tag_set_round_trips(tmp_path: Path, v1: Checkpoint) -> None:
    original = _tag_set(v1)
    path = save_tag_set(tmp_path / "mine.safetensors", original)
    loaded = load_tag_set(path)
    assert [t.tag.id for t in loaded.tags] == ["custom/jazz", "custom/calm"]
    assert [t.scorer for t in loaded.tags] == ["query", "probe"]
    assert [t.threshold for t in loaded.tags] == [0.25, 0.25]
    assert loaded.tags[0].quality == {"roc_auc": 0.9}
    assert loaded.base == BaseBinding.of(v1)
    assert loaded.examples == original.examples
    assert torch.equal(loaded.queries, original.queries)
    assert torch.equal(loaded.probe_weights, original.probe_weights)
    assert "created" in loaded.provenance
    assert path.stat().st_size < 64_000  # a small file beside an 18 MB checkpoint
    assert find_tag_sets([tmp_path]) == [path]


def test_a_modified_tag_set_is_refused(tmp_path: Path, v1: Checkpoint) -> None:
    path = save_tag_set(tmp_path / "mine.safetensors", _tag_set(v1))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x55  # a byte of the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(TagSetError, match="digest mismatch"):
        load_tag_set(path)


def test_a_checkpoint_is_not_a_tag_set() -> None:
    with pytest.raises(TagSetError, match="not a tag set"):
        load_tag_set(WEIGHTS / "default-v1.safetensors")


def test_missing_tag_set_is_named(tmp_path: Path) -> None:
    with pytest.raises(TagSetError, match="tag set not found"):
        find_tag_sets([tmp_path / "nope.safetensors"])


def test_a_tag_set_refuses_another_base(tmp_path: Path, v1: Checkpoint) -> None:
    path = save_tag_set(tmp_path / "mine.safetensors", _tag_set(v1))
    default = load_checkpoint(WEIGHTS / "default.safetensors")
    with pytest.raises(TagSetError) as refused:
        extend_checkpoint(default, [load_tag_set(path)])
    message = str(refused.value)
    assert "was taught on q2l-small@" + v1.sha256[:12] in message
    assert "tagger retrain" in message


def test_colliding_tag_ids_are_refused(v1: Checkpoint) -> None:
    first, second = _tag_set(v1), _tag_set(v1, names=("calm", "sad"), seed=1)
    with pytest.raises(TagSetError, match=r"collide.*custom/calm"):
        extend_checkpoint(v1, [first, second])


def test_extension_appends_tags_and_thresholds(v1: Checkpoint) -> None:
    extended = extend_checkpoint(v1, [_tag_set(v1)])
    assert isinstance(extended.model, TaggedModel)
    assert extended.model.n_classes == 52
    assert [t.id for t in extended.metadata.tags[-3:]] == ["choral", "custom/jazz", "custom/calm"]
    assert extended.metadata.thresholds[-2:] == (0.25, 0.25)
    assert extended.model_id == v1.model_id  # the embedding and base scores are the base's


def _real_windows(music: Path, count: int = 24) -> torch.Tensor:
    tracks = sorted((music / "nexuiz-music").glob("*.ogg"))[:3]
    windows = [
        split_windows(torch.from_numpy(decode_audio(t, sample_rate=16000).samples), 59049)[:8]
        for t in tracks
    ]
    return torch.cat(windows)[:count]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_base_logits_are_bit_identical_on_real_music(
    music: Path, v1: Checkpoint, precision: str
) -> None:
    """The new tags run as their own decoder pass over the same memory: every base logit is
    bit for bit what the base model computes, in fp32 and under bf16 autocast."""
    windows = _real_windows(music, 16)
    base = load_checkpoint(WEIGHTS / "default-v1.safetensors").model
    extended = extend_checkpoint(v1, [_tag_set(v1)]).model
    dtype = torch.bfloat16 if precision == "bf16" else None
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        base_logits, base_embedding = base.forward_with_embedding(windows)
        logits, embedding = extended.forward_with_embedding(windows)
    assert logits.shape == (16, 52)
    assert torch.equal(logits[:, :50], base_logits)
    assert torch.equal(embedding, base_embedding)
    assert logits[:, 50:].float().std(dim=0).min() > 0  # the new tags score something real


def test_served_base_scores_are_unchanged_on_real_music(music: Path, v1: Checkpoint) -> None:
    """Through the runtime that serves them the base probabilities stay within 1e-6 with the
    same ranking of tags in every window (the logits are identical, but the sigmoid of a
    52-wide row rounds some of its elements in another SIMD lane than a 50-wide one: 4e-9
    measured)."""
    windows = _real_windows(music)
    options = RuntimeOptions(precision="fp32", compile="off", embeddings=True)
    cpu = torch.device("cpu")
    base = Runtime(load_checkpoint(WEIGHTS / "default-v1.safetensors").model, cpu, options)
    extended = Runtime(extend_checkpoint(v1, [_tag_set(v1)]).model, cpu, options)
    base_rows, extended_rows = base(windows), extended(windows)
    assert extended_rows.shape == (len(windows), 52 + 512)
    torch.testing.assert_close(extended_rows[:, :50], base_rows[:, :50], rtol=0, atol=1e-6)
    assert torch.equal(
        extended_rows[:, :50].argsort(dim=1, stable=True),
        base_rows[:, :50].argsort(dim=1, stable=True),
    )
    assert torch.equal(extended_rows[:, 52:], base_rows[:, 50:])  # the same embedding


def test_a_copied_base_query_scores_like_the_base_tag(music: Path, v1: Checkpoint) -> None:
    """A tag set whose query and row are copies of a base tag's must give that tag's scores:
    its own decoder pass is the base decoder's."""
    model = v1.model
    assert isinstance(model, Query2Label)
    copied = dataclasses.replace(
        _tag_set(v1, names=("guitar", "piano"), scorers=("query", "query")),
        queries=model.query_embed.weight[[0, 9]].detach().clone(),
        query_rows=model.classifier.weight[0, [0, 9]].detach().clone(),
        query_biases=model.classifier.bias[0, [0, 9]].detach().clone(),
    )
    extended = extend_checkpoint(v1, [copied]).model
    with torch.inference_mode():
        logits = extended(_real_windows(music, 16))
    torch.testing.assert_close(logits[:, 50], logits[:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[:, 51], logits[:, 9], rtol=0, atol=1e-5)


def test_a_probe_tag_scores_the_embedding(music: Path, v1: Checkpoint) -> None:
    tag_set = _tag_set(v1, scorers=("probe", "probe"))
    runtime = Runtime(
        extend_checkpoint(v1, [tag_set]).model,
        torch.device("cpu"),
        RuntimeOptions(precision="fp32", compile="off", embeddings=True),
    )
    rows = runtime(_real_windows(music, 8))
    unit = F.normalize(rows[:, 52:], dim=1)  # the runtime's embedding is already unit length
    expected = torch.sigmoid(unit @ tag_set.probe_weights.t() + tag_set.probe_biases)
    torch.testing.assert_close(rows[:, 50:52], expected, rtol=0, atol=1e-5)
