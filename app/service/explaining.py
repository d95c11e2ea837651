"""`explain=true` on `POST /tag` and `/tag/url`: evidence maps beside the tags.

The tags come from the normal path (batcher, compiled model) untouched; the maps are a model call
of their own on a private fp32 copy of the network (`model.explain.Explainer`, made on the first
explanation), in a pool of `max_concurrent_explanations` threads, so a rare explanation never
holds up the batches and costs nothing when nobody asks for one. The same limits apply as to
tagging (the audio was tagged first), plus `explain_max_audio_seconds`, and the deadline rule of
tagging, checked between chunks of windows. More explanations at once than the pool runs get
503. The audio comes from the service's own decode workers (`TaggingService._decode_samples`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from app.pipeline.explain import (
    ExplainDeadlineError,
    ExplainRequestError,
    TrackExplanation,
    choose_method,
    explain_track,
    resolve_tags,
)
from app.pipeline.vocabulary import Vocabulary
from app.service.problems import (
    BAD_REQUEST,
    DEADLINE,
    INFERENCE_FAILED,
    QUEUE_FULL,
    ProblemError,
)
from app.service.schemas import EvidenceMapBody, Explanations, SpectrogramBody, TagResponse
from app.service.settings import Settings
from model.base import TaggingModel
from model.explain import Explainer, Method, supported_methods

logger = logging.getLogger("tagger.explain")


@dataclass(frozen=True)
class ExplainOptions:
    """What to explain: `tags` by id or unambiguous name (empty: the response's top tags) with
    `method`; bare names are looked up in `taxonomy` when the request selects one."""

    tags: tuple[str, ...] = ()
    method: str | None = None
    taxonomy: str | None = None


class ExplanationRunner:
    """Runs explanations for one loaded model, a bounded number at a time."""

    def __init__(self, model: TaggingModel, vocabulary: Vocabulary, settings: Settings) -> None:
        self.settings = settings
        self.vocabulary = vocabulary
        self.names = list(vocabulary.ids)
        self._source = model
        self._local = threading.local()  # one private copy of the model per pool thread
        self._busy = 0
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_explanations, thread_name_prefix="tagger-explain"
        )

    def _explainer(self) -> Explainer:
        """This pool thread's explainer, made on its first explanation."""
        explainer: Explainer | None = getattr(self._local, "explainer", None)
        if explainer is None:
            explainer = self._local.explainer = Explainer(self._source)
        return explainer

    def check(self, options: ExplainOptions) -> Method:
        """Validate before any audio work: the method and any named tags (400 if wrong)."""
        try:
            method = choose_method(self._source, options.method)
            if options.tags:
                resolve_tags(
                    options.tags,
                    self.vocabulary,
                    (),
                    self.settings.explain_max_tags,
                    taxonomy=options.taxonomy,
                )
        except ExplainRequestError as error:
            raise ProblemError(
                BAD_REQUEST,
                str(error),
                extensions={
                    "valid_tags": self.names,
                    "methods": list(supported_methods(self._source)),
                },
            ) from None
        return method

    async def explain(
        self,
        samples: npt.NDArray[np.float32],
        response: TagResponse,
        options: ExplainOptions,
        *,
        deadline: float,
    ) -> TagResponse:
        """`response` with its `explanations`, for the decoded mono `samples` it describes."""
        method = self.check(options)
        default = [tag.tag for tag in response.tags]
        indices = resolve_tags(
            options.tags,
            self.vocabulary,
            default,
            self.settings.explain_max_tags,
            taxonomy=options.taxonomy,
        )
        if self._busy >= self.settings.max_concurrent_explanations:
            raise ProblemError(
                QUEUE_FULL,
                f"the server computes {self.settings.max_concurrent_explanations} explanation(s) "
                f"at a time and all are busy; retry after {self.settings.retry_after_s} s",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            )

        def run() -> TrackExplanation:
            return explain_track(
                self._explainer(),
                torch.from_numpy(samples),
                indices,
                self.names,
                method,
                max_columns=self.settings.explain_max_columns,
                deadline=lambda: time.monotonic() > deadline,
            )

        self._busy += 1
        future = asyncio.get_running_loop().run_in_executor(self._pool, run)
        future.add_done_callback(self._release)
        try:
            remaining = max(0.0, deadline - time.monotonic())
            result = await asyncio.wait_for(asyncio.shield(future), timeout=remaining)
        except (TimeoutError, ExplainDeadlineError):
            raise ProblemError(
                DEADLINE,
                "the explanation did not finish within the request's deadline; explain fewer "
                "tags or send shorter audio",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            ) from None
        except Exception:
            logger.exception("explanation failed")
            raise ProblemError(
                INFERENCE_FAILED,
                "the model failed while computing the evidence maps; the error is in the server "
                "log under this request id",
            ) from None
        return response.model_copy(update={"explanations": to_body(result)})

    def _release(self, future: asyncio.Future[TrackExplanation]) -> None:
        self._busy -= 1
        if not future.cancelled():
            future.exception()  # retrieved: a run past its deadline was already answered 504

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def to_body(result: TrackExplanation) -> Explanations:
    spec = result.spectrogram
    first = result.maps[0]
    return Explanations(
        method=result.method,
        step_seconds=first.step_seconds,
        columns=int(first.values.shape[1]),
        band_edges_hz=first.band_edges_hz,
        maps=[
            EvidenceMapBody(
                tag=m.tag,
                peak=m.peak,
                values=[[round(v, 3) for v in row] for row in m.values.tolist()],
            )
            for m in result.maps
        ],
        spectrogram=SpectrogramBody(
            rows=int(spec.values.shape[0]),
            columns=int(spec.values.shape[1]),
            step_seconds=spec.step_seconds,
            band_edges_hz=spec.band_edges_hz,
            db_min=spec.db_min,
            db_max=spec.db_max,
            data=spec.to_base64(),
        ),
        compute_ms=result.compute_seconds * 1000,
    )
