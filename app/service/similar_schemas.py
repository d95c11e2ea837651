"""Response models of the catalogue endpoints (`POST /similar`, `GET /catalog/...`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.service.schemas import Embedding


class TrackTag(BaseModel):
    tag: str = Field(description="The tag's id (msd/rock, or the bare name).", examples=["piano"])
    score: float = Field(ge=0.0, le=1.0, examples=[0.42])


class CatalogTrack(BaseModel):
    """A catalogued file."""

    id: int = Field(description="The track's id in the catalogue.", examples=[12])
    file: str = Field(description="The file's path as `tagger index build` found it.")
    duration_seconds: float
    top_tags: list[TrackTag] = Field(
        description="The track's five best tags (each synonym group once for a model with "
        "several vocabularies)."
    )
    audio_url: str | None = Field(
        default=None,
        description="Where the page can play it: /catalog/tracks/{id}/audio, when the file is "
        "readable by the service; null otherwise.",
    )


class SimilarTrack(CatalogTrack):
    similarity: float = Field(description="Cosine similarity to the query, at most 1.")


class SimilarResponse(BaseModel):
    """The catalogued tracks nearest to a query, nearest first."""

    model_id: str = Field(description="The model whose embeddings were compared.")
    query: CatalogTrack | None = Field(
        default=None, description="The catalogued query track (GET .../similar only)."
    )
    results: list[SimilarTrack]


class CatalogInfo(BaseModel):
    """What the service's catalogue holds."""

    tracks: int
    model_id: str | None = Field(description="The model that built it (null while empty).")
    embedding_kind: str | None
    embedding_dim: int | None
    index: str = Field(description="exact, or ivf-flat (approximate) for large catalogues.")
    compatible: bool = Field(
        description="Whether the served model's embeddings can be compared with it."
    )


class SimilarURLRequest(BaseModel):
    """Find the catalogued tracks that sound like the audio file at a URL."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048, description="http or https URL of the file.")
    top: int = Field(default=10, ge=1, le=100, description="How many tracks to return.")
    tag: list[str] = Field(
        default_factory=list,
        description="Tags every result must have: a tag id or synonym group (msd/rock, "
        "mtt/vocal), or a bare name only one taxonomy has.",
    )
    min_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Score a tag needs (default: its threshold)."
    )
    taxonomy: list[str] = Field(
        default_factory=list,
        description="Categories in which results share the query's best tag (genre, mood...).",
    )


class VectorSearchRequest(BaseModel):
    """Search with an embedding a client already has (from POST /tag with embedding=true)."""

    model_config = ConfigDict(extra="forbid")

    embedding: Embedding
    scores: dict[str, float] | None = Field(
        default=None,
        description="The query's tag scores by tag id; only taxonomy filters need them.",
    )
    top: int = Field(default=10, ge=1, le=100, description="How many tracks to return.")
    tag: list[str] = Field(
        default_factory=list,
        description="Tags every result must have: a tag id or synonym group (msd/rock, "
        "mtt/vocal), or a bare name only one taxonomy has.",
    )
    min_score: float | None = Field(default=None, ge=0.0, le=1.0)
    taxonomy: list[str] = Field(default_factory=list)
