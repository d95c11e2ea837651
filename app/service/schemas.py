"""Request and response bodies, documented in OpenAPI with examples."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _absent_if_none(value: object) -> bool:
    return value is None


_TAXONOMY_DESCRIPTION = (
    "The vocabulary the tag belongs to (mtt: MagnaTagATune, msd: the Million Song Dataset's "
    "Last.fm tags); only in the answers of a model with several vocabularies."
)


class TagScore(BaseModel):
    """One tag's track-level score."""

    tag: str = Field(
        description="The tag's id: `taxonomy/name` (msd/rock) for a model with several "
        "vocabularies, the bare name otherwise.",
        examples=["guitar"],
    )
    score: float = Field(ge=0.0, le=1.0, description="Probability in [0, 1].", examples=[0.87])
    category: str = Field(examples=["instrument"])
    synonym_group: str = Field(
        description="Tags with the same group are near-duplicates (vocal, vocals, voice...; "
        "across vocabularies too: mtt/rock and msd/rock).",
        examples=["guitar"],
    )
    taxonomy: str | None = Field(
        default=None, exclude_if=_absent_if_none, description=_TAXONOMY_DESCRIPTION
    )
    threshold: float = Field(ge=0.0, le=1.0, examples=[0.5])
    passes_threshold: bool = Field(examples=[True])


class Segment(BaseModel):
    """Scores of one analysis window, for a tag-over-time view."""

    start: float = Field(ge=0.0, description="Seconds from the start.", examples=[0.0])
    end: float = Field(ge=0.0, description="Seconds from the start.", examples=[3.69])
    scores: dict[str, float] = Field(
        description="Every tag's probability in this window (of the asked taxonomy only), "
        "keyed by tag id.",
        examples=[{"guitar": 0.91, "rock": 0.62}],
    )
    embedding: list[float] | None = Field(
        default=None, description="This window's embedding, only when embedding=true."
    )


class Embedding(BaseModel):
    """A track's L2-normalised embedding; comparable only with the same model's (model_id)."""

    model_id: str = Field(description="The model that computed it.")
    kind: str = Field(description="What is pooled, e.g. backbone-mean-max (docs/similarity.md).")
    dim: int = Field(description="Length of the vector.", examples=[512])
    vector: list[float] = Field(description="Unit length: cosine similarity is the dot product.")


class Timings(BaseModel):
    """Where the time of this request went, in milliseconds."""

    fetch_ms: float | None = Field(default=None, description="Download (URL requests only).")
    decode_ms: float = Field(description="Decoding and resampling.")
    queue_ms: float = Field(description="Windows waiting for the model.")
    compute_ms: float = Field(description="Model batches that held this request's windows.")
    total_ms: float = Field(description="Everything after the request body was received.")


TAXONOMY_PARAMETER = (
    "Only the tags of this taxonomy (mtt or msd; GET /tags lists a model's). A model with one "
    "vocabulary has none and refuses the parameter."
)
SYNONYMS_PARAMETER = (
    "one: each synonym group once in the top-k, by its best-scoring member; all: every tag. "
    "Default: one for a model with several vocabularies, all otherwise."
)

_TAG_EXAMPLE: dict[str, Any] = {
    "model_id": "q2l-small@3f2a9c1b7d4e",
    "duration_seconds": 29.1,
    "windows": 8,
    "window_seconds": 3.69,
    "format": "mp3",
    "tags": [
        {
            "tag": "guitar",
            "score": 0.87,
            "category": "instrument",
            "synonym_group": "guitar",
            "threshold": 0.5,
            "passes_threshold": True,
        },
        {
            "tag": "rock",
            "score": 0.41,
            "category": "genre",
            "synonym_group": "rock",
            "threshold": 0.5,
            "passes_threshold": False,
        },
    ],
    "segments": None,
    "timings": {
        "fetch_ms": None,
        "decode_ms": 38.2,
        "queue_ms": 4.9,
        "compute_ms": 212.0,
        "total_ms": 257.3,
    },
}


class TagResponse(BaseModel):
    """Tags of one track."""

    model_config = ConfigDict(json_schema_extra={"examples": [_TAG_EXAMPLE]})

    model_id: str = Field(description="Preset and checkpoint digest prefix of the model.")
    duration_seconds: float = Field(description="Length of the decoded audio.")
    windows: int = Field(description="Analysis windows the track was cut into.")
    window_seconds: float = Field(description="Length of one window.")
    format: str = Field(description="Container the decoder recognised (mp3, ogg, wav...).")
    tags: list[TagScore] = Field(
        description="The top_k tags, best first; by default a model with several vocabularies "
        "lists each synonym group once (synonyms=all lists every tag)."
    )
    segments: list[Segment] | None = Field(
        default=None, description="Per-window scores, only when segments=true."
    )
    timings: Timings
    explanations: Explanations | None = Field(
        default=None, description="Evidence maps, only when explain=true."
    )
    embedding: Embedding | None = Field(
        default=None, description="The track's embedding, only when embedding=true."
    )


class TagURLRequest(BaseModel):
    """Tag the audio file at a URL; the service downloads it itself."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"url": "https://example.org/music/track.mp3", "top_k": 5}]
        },
    )

    url: str = Field(min_length=1, max_length=2048, description="http or https URL of the file.")
    top_k: int = Field(default=10, ge=1, description="How many tags to return.")
    threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="One threshold for every tag."
    )
    segments: bool = Field(default=False, description="Also return per-window scores.")
    explain: bool = Field(
        default=False, description="Also return evidence maps (docs/explanations.md)."
    )
    explain_tags: list[str] = Field(
        default_factory=list, description="Tags to explain (default: the returned top tags)."
    )
    explain_method: Literal["gradient", "attention"] | None = Field(
        default=None, description="Evidence method (default: gradient)."
    )
    embedding: bool = Field(
        default=False, description="Also return the track's embedding (and each window's)."
    )
    taxonomy: str | None = Field(
        default=None,
        description=TAXONOMY_PARAMETER,
        examples=["msd"],
    )
    synonyms: Literal["one", "all"] | None = Field(default=None, description=SYNONYMS_PARAMETER)


class TagInfo(BaseModel):
    index: int = Field(description="Position in the model's output.", examples=[0])
    id: str | None = Field(
        default=None,
        exclude_if=_absent_if_none,
        description="What outputs call the tag (msd/rock); only for a model with several "
        "vocabularies, whose tags are otherwise named by `name`.",
        examples=["msd/rock"],
    )
    taxonomy: str | None = Field(
        default=None, exclude_if=_absent_if_none, description=_TAXONOMY_DESCRIPTION
    )
    name: str = Field(examples=["guitar"])
    category: str = Field(examples=["instrument"])
    synonym_group: str = Field(examples=["guitar"])
    threshold: float = Field(examples=[0.5])


class CategoryTags(BaseModel):
    category: str = Field(
        description="genre, era, mood, instrument, vocal, tempo/dynamics or other."
    )
    tags: list[TagInfo] = Field(description="In model order.")


class TaxonomyTags(BaseModel):
    taxonomy: str | None = Field(
        description="mtt, msd...; null for a model with one vocabulary.", examples=["msd"]
    )
    categories: list[CategoryTags] = Field(
        description="The categories that have tags, in the order genre, era, mood, instrument, "
        "vocal, tempo/dynamics, other."
    )


class TagsResponse(BaseModel):
    """The vocabulary (or the asked taxonomy's part of it): in model order, and grouped."""

    model_id: str
    tags: list[TagInfo] = Field(description="In model order.")
    taxonomies: list[TaxonomyTags] = Field(
        description="The same tags grouped: each taxonomy in model order, then its categories."
    )


class BatchingInfo(BaseModel):
    max_batch_windows: int
    max_wait_ms: float
    max_queued_windows: int
    batch_shapes: list[int] = Field(description="Chunk sizes the model is called with.")


class RuntimeDescription(BaseModel):
    """How the model is executed (see model/runtime.py)."""

    precision: str = Field(
        description="fp32, bf16 or fp16 (autocast around an fp32 front end), or int8 (int8 "
        "convolutions, fp32 front end and transformer)."
    )
    channels_last: bool
    compile: str = Field(description="The compile setting: auto, on or off.")
    compiled: bool = Field(description="Whether compiled graphs (AOTInductor) are in use.")
    execution: Literal["eager", "compiling", "compiled"] = Field(
        default="eager",
        description="What runs the batches now: eager, compiling (eager while a child process "
        "builds the compiled graphs) or compiled.",
    )
    artifact: str | None = Field(
        default=None,
        description="The compiled artifact that runs: what it was built for, whether it was "
        "built now or found in the cache, and its cache entry; null while eager.",
    )
    compile_cache: str | None = Field(
        default=None, description="The folder compiled artifacts are cached in."
    )
    compile_error: str | None = Field(
        default=None, description="Why compilation was abandoned for eager execution, if it was."
    )
    warmup_seconds: float | None = Field(
        default=None, description="Time to run (and compile) every batch shape; null until ready."
    )
    compile_seconds: float | None = Field(
        default=None,
        description="Time the build process took; null when the artifact came from the cache "
        "or is not built yet.",
    )
    int8: bool = Field(
        default=False, description="Whether the compiled graphs are (or will be) int8."
    )
    int8_reason: str | None = Field(
        default=None,
        description="Why int8 is or is not used (CPU int8 dot products, the checkpoint's own "
        "accuracy check, measured speed; see docs/performance.md).",
    )


class ModelInfo(BaseModel):
    """What is loaded and how it runs."""

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "model_id": "q2l-small@3f2a9c1b7d4e",
                    "preset": "q2l-small",
                    "architecture": "q2l",
                    "parameters": 4664628,
                    "checkpoint_sha256": "3f2a9c1b7d4e...",
                    "n_tags": 50,
                    "sample_rate": 16000,
                    "window_samples": 59049,
                    "window_seconds": 3.69,
                    "device": "cpu",
                    "dtype": "bfloat16 (autocast)",
                    "torch_threads": 1,
                    "runtime": {
                        "precision": "bf16",
                        "channels_last": True,
                        "compile": "auto",
                        "compiled": True,
                        "compile_error": None,
                        "warmup_seconds": 61.5,
                    },
                    "batching": {
                        "max_batch_windows": 64,
                        "max_wait_ms": 5.0,
                        "max_queued_windows": 1024,
                        "batch_shapes": [1, 2, 4, 8],
                    },
                    "training_data": "MagnaTagATune (CC BY-NC-SA 3.0)",
                    "metrics": {"roc_auc": 0.91, "pr_auc": 0.45},
                    "provenance": {"code_version": "0.1.0"},
                }
            ]
        },
    )

    model_id: str
    preset: str
    architecture: str
    parameters: int
    checkpoint_sha256: str
    n_tags: int
    sample_rate: int
    window_samples: int
    window_seconds: float
    device: str
    dtype: str = Field(description="float32, or the autocast dtype.")
    torch_threads: int
    runtime: RuntimeDescription
    batching: BatchingInfo
    training_data: Any = Field(default=None, description="From the checkpoint's provenance.")
    metrics: Any = Field(default=None, description="From the checkpoint's provenance.")
    provenance: dict[str, Any] = Field(description="Everything the checkpoint records.")


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    model_id: str


class ProblemBody(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "tag:music-tagger,2026:problem:queue-full",
                    "title": "Server busy",
                    "status": 503,
                    "detail": "the queue is full (1020 of 1024 windows); retry after 1 s",
                    "request_id": "4be0b5c2f3c94e0e9d0d3f1f4f0f5d7e",
                }
            ]
        },
    )

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None


# ----- evidence maps (explain=true; docs/explanations.md) ---------------------------------------


class EvidenceMapBody(BaseModel):
    """One tag's evidence over the track, on the grid its `Explanations` describes."""

    tag: str = Field(examples=["flute"])
    peak: float = Field(
        description="The largest cell before scaling to [0, 1] (method-specific units)."
    )
    values: list[list[float]] = Field(
        description="bands × columns in [0, 1], lowest band first; column j covers seconds "
        "[j·step_seconds, (j+1)·step_seconds), band i covers band_edges_hz[i]..[i+1].",
        examples=[[[0.0, 0.2, 1.0], [0.1, 0.4, 0.3]]],
    )


class SpectrogramBody(BaseModel):
    """The track's log-mel spectrogram, downsampled, to draw the evidence on."""

    rows: int = Field(description="Mel bands, lowest first.", examples=[64])
    columns: int = Field(examples=[128])
    step_seconds: float = Field(description="Seconds per column.", examples=[0.115])
    band_edges_hz: list[float] = Field(description="rows + 1 band edges, Hz.")
    db_min: float = Field(description="Level of byte 0 (dB for dB models).")
    db_max: float = Field(description="Level of byte 255: the loudest cell.")
    data: str = Field(description="Base64 of rows × columns bytes, row-major, lowest band first.")


class Explanations(BaseModel):
    """Evidence maps of the explained tags (only with explain=true)."""

    method: Literal["gradient", "attention"] = Field(
        description="gradient: gradient × input of the tag's logit on the log-mel; attention: "
        "the tag query's cross-attention onto the audio tokens times the window's score."
    )
    step_seconds: float = Field(
        description="Seconds per column: one token step (0.46 s for Q2L), or a multiple of it "
        "for tracks longer than explain_max_columns steps.",
        examples=[0.4613],
    )
    columns: int = Field(description="Time columns of every map (at most explain_max_columns).")
    band_edges_hz: list[float] = Field(description="bands + 1 frequency band edges, Hz.")
    maps: list[EvidenceMapBody]
    spectrogram: SpectrogramBody
    compute_ms: float = Field(description="The explained forward (and backward) passes.")


TagResponse.model_rebuild()  # it refers to Explanations, defined after it
