"""Evidence maps of a whole track in the form both front ends give them out.

`tagger explain` draws them, the service returns them (`explanations` in `POST /tag` and
`/tag/url` with `explain=true`). The maths is `model.explain`; this module picks the tags,
runs the windows in chunks, lays them on the track's time axis, bounds the size and adds the
log-mel spectrogram to draw the evidence on.

Resolution (documented in docs/explanations.md): evidence has one column per time step of a
window (window / W: 0.46 s for the Q2L presets) until a track has more than `max_columns` steps;
then consecutive steps are averaged in groups, so a map never has more than `max_columns`
columns. Frequency: the attention map has the token grid's H rows (4 for the Q2L presets), the
gradient map `GRADIENT_BANDS` (16) groups of mel filters; both come with band edges in Hz.
The spectrogram has `SPECTROGRAM_ROWS` rows and `SPECTROGRAM_COLUMNS_PER_STEP` columns per
evidence column, as bytes (0 = `db_min`, 255 = `db_max`, the loudest cell of the track).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from app.pipeline.vocabulary import (
    AmbiguousTagError,
    UnknownTagError,
    UnknownTaxonomyError,
    Vocabulary,
)
from model.base import TaggingModel
from model.explain import Explainer, Method, band_edges_hz, pool_time, stitch, supported_methods
from model.frontend import MelFrontEnd
from model.inference import split_windows, window_starts

SPECTROGRAM_ROWS = 64
SPECTROGRAM_COLUMNS_PER_STEP = 4
SPECTROGRAM_RANGE_DB = 80.0
CHUNK_WINDOWS = 8  # windows per explained forward pass: bounds memory on long tracks
DEFAULT_METHOD_ORDER: tuple[Method, ...] = ("gradient", "attention")  # the measured winner first


class ExplainRequestError(ValueError):
    """The request names something this model cannot explain; the message says what is valid."""


class ExplainDeadlineError(TimeoutError):
    """The explanation did not finish before its deadline."""


@dataclass(frozen=True)
class EvidenceMap:
    """One tag's evidence over the track.

    Attributes:
        values: (bands, columns) in [0, 1]: the map divided by its largest cell.
        peak: That largest cell before scaling (method-specific units).
    """

    tag: str
    method: Method
    values: Tensor
    peak: float
    step_seconds: float
    band_edges_hz: list[float]


@dataclass(frozen=True)
class Spectrogram:
    """The track's log-mel, downsampled: (rows, columns) uint8, lowest band first."""

    values: Tensor
    step_seconds: float
    band_edges_hz: list[float]
    db_min: float
    db_max: float

    def to_base64(self) -> str:
        return base64.b64encode(self.values.contiguous().numpy().tobytes()).decode("ascii")


@dataclass(frozen=True)
class TrackExplanation:
    method: Method
    maps: list[EvidenceMap]
    spectrogram: Spectrogram
    window_scores: Tensor  # (N, n_tags), from the explained forward passes
    compute_seconds: float


def choose_method(model: TaggingModel, requested: str | None) -> Method:
    """The requested method if the model has it, else the best one it has."""
    methods = supported_methods(model)
    if not methods:
        raise ExplainRequestError(
            f"a {model.architecture} model cannot be explained: evidence maps need "
            "label queries (attention) or a log-mel front end (gradient)"
        )
    if requested is None:
        return next(m for m in DEFAULT_METHOD_ORDER if m in methods)
    if requested not in methods:
        offered = ", ".join(methods)
        raise ExplainRequestError(
            f"a {model.architecture} model cannot give a {requested!r} map "
            f"(it has no label queries); use one of: {offered}"
        )
    method: Method = requested
    return method


def resolve_tags(
    requested: Sequence[str],
    vocabulary: Vocabulary,
    default: Sequence[str],
    max_tags: int,
    *,
    taxonomy: str | None = None,
) -> list[int]:
    """Indices of the tags to explain: the requested ones, or `default` (the top-k tag ids).

    A tag is named by its id or a bare name that is unambiguous (within `taxonomy` if given;
    `app.pipeline.vocabulary`)."""
    try:
        vocabulary.select(taxonomy)
    except UnknownTaxonomyError as error:
        raise ExplainRequestError(str(error)) from None
    chosen = list(dict.fromkeys(requested)) if requested else list(default)[:max_tags]
    indices: list[int] = []
    unknown: list[str] = []
    for name in chosen:
        try:
            indices.append(vocabulary.resolve(name, taxonomy=taxonomy))
        except UnknownTagError:
            unknown.append(name)
        except AmbiguousTagError as error:
            raise ExplainRequestError(str(error)) from None
    if unknown:
        raise ExplainRequestError(
            f"unknown tag(s) {', '.join(map(repr, unknown))}; valid tags: "
            + ", ".join(vocabulary.ids)
        )
    if not chosen:
        raise ExplainRequestError("name at least one tag to explain")
    if len(chosen) > max_tags:
        raise ExplainRequestError(
            f"{len(chosen)} tags asked for; explain at most {max_tags} at once"
        )
    return list(dict.fromkeys(indices))


def spectrogram(
    frontend: MelFrontEnd, samples: Tensor, columns: int, mel_config: object
) -> Spectrogram:
    """The track's dB log-mel pooled to SPECTROGRAM_ROWS × `columns`, quantised to bytes."""
    with torch.no_grad():
        mel = frontend.log_mel(samples[None].float())[0]  # (n_mels, frames), dB or log10
    rows = min(SPECTROGRAM_ROWS, mel.shape[0])
    columns = max(1, min(columns, mel.shape[1]))
    pooled = F.adaptive_avg_pool2d(mel[None], (rows, columns))[0]
    top = float(pooled.max())
    span = (
        SPECTROGRAM_RANGE_DB
        if frontend.compression == "db"
        else max(1e-6, top - float(pooled.min()))
    )
    low = top - span
    quantised = ((pooled - low) / span).clamp(0, 1).mul(255).round().to(torch.uint8)
    duration = samples.shape[0] / frontend.spectrogram.sample_rate
    return Spectrogram(
        values=quantised,
        step_seconds=duration / columns,
        band_edges_hz=band_edges_hz(mel_config, rows),  # type: ignore[arg-type]
        db_min=round(low, 2),
        db_max=round(top, 2),
    )


def explain_track(
    explainer: Explainer,
    samples: Tensor,
    tag_indices: Sequence[int],
    names: Sequence[str],
    method: Method,
    *,
    max_columns: int,
    deadline: Callable[[], bool] | None = None,
) -> TrackExplanation:
    """Evidence maps of a mono track (T,) for the tags at `tag_indices`.

    Args:
        deadline: Called between chunks of windows; True stops with ExplainDeadlineError.
    """
    begun = time.monotonic()
    model = explainer.model
    window = model.audio.window_samples
    windows = split_windows(samples, window)
    scores, maps = [], []
    for start in range(0, windows.shape[0], CHUNK_WINDOWS):
        if deadline is not None and deadline():
            raise ExplainDeadlineError("the explanation ran past the request deadline")
        evidence = explainer.explain(windows[start : start + CHUNK_WINDOWS], tag_indices, [method])
        scores.append(evidence.scores)
        maps.append(evidence.maps[method])
    window_maps = torch.cat(maps)  # (N, K, F, W)
    steps = window_maps.shape[3]
    track = stitch(window_maps, window_starts(samples.shape[0], window), window, samples.shape[0])
    track, factor = pool_time(track, max_columns)
    step_seconds = window / steps / model.audio.sample_rate * factor
    edges = band_edges_hz(explainer.mel, track.shape[1])
    evidence_maps = []
    for k, index in enumerate(tag_indices):
        peak = float(track[k].max())
        values = track[k] / peak if peak > 0 else torch.zeros_like(track[k])
        evidence_maps.append(
            EvidenceMap(names[index], method, values, peak, round(step_seconds, 4), edges)
        )
    frontend = getattr(model, "frontend", None)
    assert isinstance(frontend, MelFrontEnd)  # every explainable model has one
    columns = track.shape[2] * SPECTROGRAM_COLUMNS_PER_STEP
    spec = spectrogram(frontend, samples, columns, explainer.mel)
    return TrackExplanation(
        method=method,
        maps=evidence_maps,
        spectrogram=spec,
        window_scores=torch.cat(scores),
        compute_seconds=time.monotonic() - begun,
    )
