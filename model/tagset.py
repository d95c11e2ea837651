"""Tag sets: a user's own tags, taught on a frozen Query2Label checkpoint (docs/custom-tags.md).

A tag set is one small `.safetensors` file that extends exactly one base checkpoint. Per tag it
holds two scorers, both trained on the same examples, and names the one that measured better:

    query   a new label query (d_model) and its classifier row (d_model + bias): the query
            cross-attends to the base model's audio tokens through the frozen decoder, exactly
            like a base tag's query
    probe   a logistic regression (embedding_dim + bias) on the window's L2-normalised pooled
            embedding, the vector `model.embedding` returns beside the scores

Tensors: `queries`, `query_rows` (K, d_model), `query_biases` (K,), `probe_weights`
(K, embedding_dim), `probe_biases` (K,). Metadata, one JSON document under `music_tagger_tagset`:

    format, format_version   "music-tagger-tagset", 1
    name, taxonomy           the set's name; the taxonomy its tags are named in (`custom/jazz`)
    base                     {sha256, preset, model_id}: the base checkpoint file's digest; any
                             other base is refused (`TagSetError`), `tagger retrain` rebuilds
                             the set for a new one from `examples`
    tags                     [{name, category, synonym_group, scorer, threshold, quality}]
    examples                 [{path, sha256, positive: [tag], negative: [tag], group}]
    provenance               how it was trained (settings, times, code version, date)
    content_sha256           digest over the document and every tensor, as in checkpoints

The base tags' scores never change: the decoder has no self-attention between queries, and
`TaggedModel` computes the base logits with the very operations of `Query2Label` on the same
memory, then runs the new queries as their own pass (bit-identical base scores, tested on real
music in tests/model/test_tagset.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from model.checkpoint import Checkpoint, _code_version, _content_digest
from model.q2l import GroupWiseLinear, Query2Label
from model.tags import Tag

FORMAT = "music-tagger-tagset"
FORMAT_VERSION = 1
_METADATA_KEY = "music_tagger_tagset"
TENSOR_NAMES = ("queries", "query_rows", "query_biases", "probe_weights", "probe_biases")

Scorer = Literal["query", "probe"]
SCORERS: tuple[Scorer, ...] = ("query", "probe")


class TagSetError(Exception):
    """A tag set that cannot be used (or not with this base); the message says why."""


@dataclass(frozen=True)
class TaughtTag:
    """One tag of a set: its vocabulary entry, which scorer serves it, its decision threshold
    (chosen on out-of-fold scores) and its measured quality."""

    tag: Tag
    scorer: Scorer
    threshold: float
    quality: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.tag.name,
            "category": self.tag.category,
            "synonym_group": self.tag.synonym_group,
        }
        return entry | {"scorer": self.scorer, "threshold": self.threshold, "quality": self.quality}


@dataclass(frozen=True)
class BaseBinding:
    """The base checkpoint a tag set extends."""

    sha256: str
    preset: str
    model_id: str

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> BaseBinding:
        return cls(checkpoint.sha256, checkpoint.metadata.preset, checkpoint.model_id)


@dataclass(frozen=True)
class TagSet:
    """A loaded (or freshly taught) tag set; tensors are float32 on the CPU."""

    name: str
    taxonomy: str
    base: BaseBinding
    tags: tuple[TaughtTag, ...]
    queries: Tensor  # (K, d_model)
    query_rows: Tensor  # (K, d_model)
    query_biases: Tensor  # (K,)
    probe_weights: Tensor  # (K, embedding_dim)
    probe_biases: Tensor  # (K,)
    examples: tuple[dict[str, Any], ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        count = len(self.tags)
        if count == 0:
            raise TagSetError("a tag set needs at least one tag")
        for name in TENSOR_NAMES:
            tensor = getattr(self, name)
            if tensor.shape[0] != count:
                raise TagSetError(f"{name} has {tensor.shape[0]} rows for {count} tags")
        if self.queries.shape != self.query_rows.shape:
            raise TagSetError("queries and query_rows must have the same shape")
        ids = [tag.tag.id for tag in self.tags]
        if len(set(ids)) != len(ids):
            raise TagSetError(f"tag names repeat within the set: {sorted(ids)}")
        for tag in self.tags:
            if tag.tag.taxonomy != self.taxonomy:
                raise TagSetError(f"tag {tag.tag.id} is not in the set's taxonomy")
            if tag.scorer not in SCORERS:
                raise TagSetError(f"tag {tag.tag.id}: unknown scorer {tag.scorer!r}")
            if not 0.0 <= tag.threshold <= 1.0:
                raise TagSetError(f"tag {tag.tag.id}: threshold must lie in [0, 1]")

    @property
    def vocabulary(self) -> tuple[Tag, ...]:
        return tuple(tag.tag for tag in self.tags)

    def tensors(self) -> dict[str, Tensor]:
        return {name: getattr(self, name).detach().float().contiguous() for name in TENSOR_NAMES}

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "taxonomy": self.taxonomy,
            "base": dataclasses.asdict(self.base),
            "tags": [tag.to_dict() for tag in self.tags],
            "examples": list(self.examples),
            "provenance": self.provenance,
        }

    def check_base(self, checkpoint: Checkpoint) -> None:
        """Refuse any base checkpoint but the one the set was taught on."""
        if checkpoint.sha256 != self.base.sha256:
            where = f"{self.path}: " if self.path else ""
            raise TagSetError(
                f"{where}tag set {self.name!r} was taught on {self.base.model_id} "
                f"(sha256 {self.base.sha256[:12]}…) but the model is {checkpoint.model_id}; "
                f"rebuild it for this model with `tagger retrain {self.path or 'SET'} "
                f"--checkpoint {checkpoint.path}`"
            )
        if not isinstance(checkpoint.model, Query2Label) or isinstance(
            checkpoint.model, TaggedModel
        ):
            raise TagSetError("tag sets extend a plain Query2Label checkpoint")
        model = checkpoint.model
        if self.queries.shape[1] != model.config.d_model:
            raise TagSetError(
                f"queries are {self.queries.shape[1]}-wide, the model's d_model is "
                f"{model.config.d_model}"
            )
        if self.probe_weights.shape[1] != model.embedding_dim:
            raise TagSetError("probe weights do not fit the model's embedding")


def save_tag_set(path: str | Path, tag_set: TagSet) -> Path:
    """Write `tag_set` to one safetensors file (code version and date are added)."""
    path = Path(path)
    tag_set = dataclasses.replace(
        tag_set,
        provenance={
            "code_version": _code_version(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **tag_set.provenance,
        },
    )
    tensors = tag_set.tensors()
    document = tag_set.document()
    document["content_sha256"] = _content_digest(document, tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, so a service watching the folder never reads half a file.
    partial = path.with_name(f".{path.name}.partial")
    save_file(tensors, str(partial), metadata={_METADATA_KEY: json.dumps(document)})
    partial.replace(path)
    return path


def load_tag_set(path: str | Path) -> TagSet:
    """Read and verify a tag set file.

    Raises:
        TagSetError: missing, truncated, modified or malformed file; the message says which.
    """
    path = Path(path)
    if not path.is_file():
        raise TagSetError(f"tag set not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own Rust-side error types
        raise TagSetError(f"{path}: not a readable safetensors file: {error}") from error
    if _METADATA_KEY not in header:
        raise TagSetError(f"{path}: not a tag set (a checkpoint? tag sets come from tagger teach)")
    try:
        document = json.loads(header[_METADATA_KEY])
    except json.JSONDecodeError as error:
        raise TagSetError(f"{path}: metadata is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise TagSetError(f"{path}: metadata is not a {FORMAT} document")
    if document.get("format_version") != FORMAT_VERSION:
        raise TagSetError(
            f"{path}: tag set format version {document.get('format_version')!r} is not "
            f"supported (this code reads version {FORMAT_VERSION})"
        )
    recorded = document.pop("content_sha256", None)
    if recorded != _content_digest(document, tensors):
        raise TagSetError(f"{path}: content digest mismatch: the file was modified or corrupted")
    if sorted(tensors) != sorted(TENSOR_NAMES):
        raise TagSetError(f"{path}: expected tensors {', '.join(TENSOR_NAMES)}")
    try:
        taxonomy = str(document["taxonomy"])
        tags = tuple(
            TaughtTag(
                tag=dataclasses.replace(Tag.from_dict(entry), taxonomy=taxonomy),
                scorer=cast(Scorer, entry["scorer"]),
                threshold=float(entry["threshold"]),
                quality=dict(entry.get("quality") or {}),
            )
            for entry in document["tags"]
        )
        return TagSet(
            name=str(document["name"]),
            taxonomy=taxonomy,
            base=BaseBinding(**document["base"]),
            tags=tags,
            examples=tuple(document.get("examples") or ()),
            provenance=dict(document.get("provenance") or {}),
            path=path,
            **{name: tensors[name].float() for name in TENSOR_NAMES},
        )
    except (KeyError, TypeError, ValueError) as error:
        missing = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        raise TagSetError(f"{path}: invalid metadata: {missing}") from error
    except TagSetError as error:
        raise TagSetError(f"{path}: {error}") from error


def find_tag_sets(paths: Sequence[str | Path]) -> list[Path]:
    """The tag set files named: files as given, folders' `*.safetensors` in name order."""
    found: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found.extend(sorted(p for p in entry.glob("*.safetensors") if p.is_file()))
        elif entry.exists():
            found.append(entry)
        else:
            raise TagSetError(f"tag set not found: {entry}")
    return found


def pooled_embedding(features: Tensor) -> Tensor:
    """Query2Label's pooled embedding of a backbone feature map: (B, C, H, W) -> (B, 2C)."""
    return torch.cat((features.mean(dim=(2, 3)), features.amax(dim=(2, 3))), dim=1)


def probe_logits(embedding: Tensor, weights: Tensor, biases: Tensor) -> Tensor:
    """A probe's logits from un-normalised pooled embeddings (B, D): (B, K)."""
    unit = F.normalize(embedding.float(), dim=1)
    return unit @ weights.float().t() + biases.float()


class TaggedModel(Query2Label):
    """A Query2Label checkpoint with the tags of one or more tag sets appended to its outputs.

    The module names are the base model's (so int8 recipes and explanations that address its
    layers still find them), and its `config` is the base's; `n_classes` counts the new tags.
    Outputs: the base logits, computed by exactly the base model's operations, then one logit
    per new tag from its query (its own decoder pass over the same memory) or its probe.
    """

    def __init__(self, base: Query2Label, tag_sets: Sequence[TagSet]) -> None:
        super().__init__(base.config)
        # The base's own modules, not copies: the same weight tensors give the same kernels
        # (a copy differs by float rounding in oneDNN's convolutions, about 1e-6).
        for name, module in base.named_children():
            setattr(self, name, module)
        tags = [tag for tag_set in tag_sets for tag in tag_set.tags]

        def _stack(name: str) -> Tensor:
            return torch.cat([getattr(tag_set, name).float() for tag_set in tag_sets])

        self.extra_queries = nn.Parameter(_stack("queries"), requires_grad=False)
        self.extra_classifier = GroupWiseLinear(len(tags), base.config.d_model)
        self.extra_classifier.weight = nn.Parameter(
            _stack("query_rows").unsqueeze(0), requires_grad=False
        )
        self.extra_classifier.bias = nn.Parameter(
            _stack("query_biases").unsqueeze(0), requires_grad=False
        )
        self.probe_weights = nn.Parameter(_stack("probe_weights"), requires_grad=False)
        self.probe_biases = nn.Parameter(_stack("probe_biases"), requires_grad=False)
        uses_query = torch.tensor([tag.scorer == "query" for tag in tags])
        self.register_buffer("uses_query", uses_query, persistent=False)
        self.n_base_classes = base.config.n_classes
        self.n_extra_classes = len(tags)

    @property
    def n_classes(self) -> int:
        return self.n_base_classes + self.n_extra_classes

    def forward(self, waveform: Tensor) -> Tensor:
        return self.forward_with_embedding(waveform)[0]

    def forward_with_embedding(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        features = self._backbone_features(waveform)  # (B, C, 4, 8)
        tokens, pos = self._tokens_from(features)
        # The base logits by the same operations as Query2Label._logits, on the same memory.
        memory = self.encode_tokens(tokens, pos)
        base_logits = self.decode(memory, pos, self.query_embed.weight, self.classifier)
        pooled = pooled_embedding(features)
        extra = self.extra_logits(memory, pos, pooled)
        return torch.cat((base_logits, extra.to(base_logits.dtype)), dim=1), pooled

    def extra_logits(self, memory: Tensor, pos: Tensor, pooled: Tensor) -> Tensor:
        """The new tags' logits (B, K): their own decoder pass over the memory, or their probe
        on the pooled embedding."""
        from_queries = self.decode(memory, pos, self.extra_queries, self.extra_classifier)
        from_probes = probe_logits(pooled, self.probe_weights, self.probe_biases)
        uses_query = cast(Tensor, self.uses_query)
        return torch.where(uses_query, from_queries.float(), from_probes)


def extend_checkpoint(checkpoint: Checkpoint, tag_sets: Sequence[TagSet]) -> Checkpoint:
    """The checkpoint with the sets' tags appended: a `TaggedModel`, the tags and thresholds
    after the base's, the sets named in the provenance. The digest (and so `model_id` and the
    embedding's identity) stays the base's: the embedding and the base scores do not change.

    Raises:
        TagSetError: a set taught on another base, or tag ids that collide.
    """
    if not tag_sets:
        return checkpoint
    for tag_set in tag_sets:
        tag_set.check_base(checkpoint)
    base = cast(Query2Label, checkpoint.model)
    tags = checkpoint.metadata.tags + tuple(t for s in tag_sets for t in s.vocabulary)
    ids = [tag.id for tag in tags]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise TagSetError(f"tag ids collide between the model and its tag sets: {repeated}")
    device = next(base.parameters()).device
    model = TaggedModel(base, tag_sets).to(device).eval()
    metadata = dataclasses.replace(
        checkpoint.metadata,
        tags=tags,
        thresholds=checkpoint.metadata.thresholds
        + tuple(t.threshold for s in tag_sets for t in s.tags),
        provenance=checkpoint.metadata.provenance | {"tag_sets": [_describe(s) for s in tag_sets]},
    )
    return dataclasses.replace(checkpoint, model=model, metadata=metadata)


def _describe(tag_set: TagSet) -> dict[str, Any]:
    return {
        "name": tag_set.name,
        "taxonomy": tag_set.taxonomy,
        "file": tag_set.path.name if tag_set.path else None,
        "tags": [{"id": t.tag.id, "scorer": t.scorer} for t in tag_set.tags],
    }
