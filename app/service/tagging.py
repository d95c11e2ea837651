"""The tagging pipeline behind the routes: sniff, decode, window, batch, score, describe.

Plain Python (no FastAPI): the routes only parse HTTP and call `TaggingService`. Failures are
raised as `ProblemError`s that already say what the caller should do.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from app.pipeline.defaults import InferFn, resolve_threads
from app.pipeline.describe import (
    decision_thresholds,
    format_name,
    top_tags,
    track_scores,
    window_times,
)
from app.pipeline.int8 import plan_int8
from app.pipeline.tag_sets import with_tag_sets
from app.pipeline.vocabulary import Vocabulary, VocabularyError, tag_fields
from app.service.batcher import (
    Batcher,
    BatcherStoppedError,
    BatchFailedError,
    DeadlineExceededError,
    WindowStream,
)
from app.service.decoders import (
    DecodeFailedError,
    DecodeInfo,
    DecoderPool,
    WorkerOptions,
)
from app.service.execution import Execution
from app.service.explaining import ExplainOptions, ExplanationRunner
from app.service.fetch import Fetcher, Resolver
from app.service.metrics import Metrics
from app.service.model_info import describe_model
from app.service.problems import (
    AUDIO_TOO_LONG,
    BAD_REQUEST,
    DEADLINE,
    DECODER_FAILED,
    EMPTY_AUDIO,
    INFERENCE_FAILED,
    NOT_READY,
    UNDECODABLE,
    UNSUPPORTED_MEDIA,
    UPLOAD_TOO_LARGE,
    ProblemError,
    vocabulary_problem,
)
from app.service.schemas import (
    Embedding,
    ModelInfo,
    Segment,
    TagResponse,
    TagScore,
    TagsResponse,
    Timings,
)
from app.service.settings import Settings
from model.audio.sniff import SNIFF_BYTES, SUPPORTED_FORMATS, sniff_audio
from model.checkpoint import load_checkpoint
from model.compiled import CompileCache
from model.embedding import EmbeddingSpec, embedding_spec, split_rows, track_embedding
from model.inference import WindowCutter
from model.runtime import CPU_MAX_CHUNK, Runtime, RuntimeOptions, resolve_device
from model.tagset import find_tag_sets

logger = logging.getLogger("tagger.service")

InferWrapper = Callable[[InferFn], InferFn]


@dataclass(frozen=True)
class TagOptions:
    """What the caller asked for besides the audio.

    Attributes:
        top_k: How many tags to return, best first.
        threshold: One decision threshold for all tags, or None for the checkpoint's per-tag ones.
        segments: Whether to return every window's scores too.
        embedding: Whether to return the track's embedding (and each window's, with segments).
        taxonomy: Only this taxonomy's tags (top-k and segments), or None for all.
        synonyms: "one" tag per synonym group in the top-k, "all", or None for the model's
            default (app.pipeline.vocabulary).
    """

    top_k: int = 10
    threshold: float | None = None
    segments: bool = False
    embedding: bool = False
    taxonomy: str | None = None
    synonyms: str | None = None


@dataclass(frozen=True)
class _Decoded:
    """What decoding a request's file left besides its windows."""

    info: DecodeInfo
    samples: int
    sample_rate: int
    seconds: float  # wall time from handing the file to a worker to its last sample

    @property
    def duration_seconds(self) -> float:
        return self.samples / self.sample_rate


def runtime_options(settings: Settings) -> RuntimeOptions:
    return RuntimeOptions(
        precision=settings.precision,
        channels_last=settings.channels_last,
        compile=settings.compile,
        max_chunk=settings.max_chunk_windows,
        # Always computed (pooling costs next to nothing); returned only when asked for.
        embeddings=True,
    )


class TaggingService:
    """Owns the loaded model, the batcher, the decode pool and the URL fetcher.

    Args:
        settings: Service configuration.
        metrics: Where to record what happens.
        wrap_infer: Tests only: wraps the real model call, to make a batch fail on purpose
            (a real model raises on no input this service can send it).
        resolver: Tests only: name resolution for the URL fetcher.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        wrap_infer: InferWrapper | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.in_flight = 0  # requests using this service (routes.get_service), for reloads
        self.device = resolve_device(settings.device)
        self.torch_threads = resolve_threads(settings.torch_threads)
        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.torch_threads)
        if self.device.type == "cuda":
            # Batches only ever take the few warmed-up shapes, so autotuning pays off.
            torch.backends.cudnn.benchmark = True
        logger.info("loading checkpoint %s on %s", settings.checkpoint, self.device)
        loading = time.monotonic()
        self.tag_set_files = tuple(find_tag_sets(settings.tag_sets))
        self.checkpoint = with_tag_sets(
            load_checkpoint(settings.checkpoint, device=self.device), self.tag_set_files
        )
        logger.info(
            "loaded %s (%s, %.1fM parameters) in %.1f s",
            self.checkpoint.model_id,
            self.checkpoint.metadata.preset,
            self.checkpoint.model.num_parameters() / 1e6,
            time.monotonic() - loading,
        )
        self.model = self.checkpoint.model
        self.tags = self.checkpoint.metadata.tags
        self.vocabulary = Vocabulary(self.tags)
        self.thresholds = torch.tensor(self.checkpoint.metadata.thresholds, dtype=torch.float32)
        options = runtime_options(settings)
        self.int8 = plan_int8(self.checkpoint, options, self.device)
        self.execution = Execution(
            self.model,
            self.device,
            options,
            max_batch=settings.max_batch_windows,
            checkpoint=self.checkpoint.path,
            cache=CompileCache(settings.compile_cache_dir),
            on_switch=self._publish_model_info,
            int8=self.int8,
            build_threads=self.torch_threads,
            tag_sets=self.tag_set_files,
        )
        infer: InferFn = self.execution
        self._batcher = Batcher(
            wrap_infer(infer) if wrap_infer else infer,
            window_samples=self.model.audio.window_samples,
            # A batch larger than the largest model call would only run as several calls, and
            # every request in it would wait for the last: batches stop at one call.
            max_batch_windows=self._largest_call(settings),
            warm_up=self._warm_up,
            max_wait_s=settings.max_wait_ms / 1000.0,
            max_queued_windows=settings.max_queued_windows,
            max_request_queued_windows=self._request_share(settings),
            metrics=metrics,
            pin_memory=self.device.type == "cuda",
        )
        # Each minute of audio extends its request's deadline; the batcher counts in windows.
        self._deadline_per_window_s = (
            settings.deadline_s_per_audio_minute * self.model.audio.window_seconds / 60.0
        )
        self.fetcher = Fetcher(settings, resolver=resolver, metrics=metrics)
        self._decoders = DecoderPool(
            settings.max_concurrent_decodes,
            WorkerOptions(
                sample_rate=self.model.audio.sample_rate,
                max_seconds=settings.max_audio_seconds,
                memory_mb=settings.decode_memory_mb,
                timeout_s=settings.decode_timeout_s,
                fault_injection=settings.decode_fault_injection,
            ),
            metrics=metrics,
        )
        metrics.idle_decoders.set_function(lambda: float(self._decoders.idle_workers))
        metrics.ready.set_function(lambda: float(self.ready))
        if self.device.type == "cuda":
            device = self.device
            metrics.gpu_memory.set_function(lambda: float(torch.cuda.memory_allocated(device)))
        self._publish_model_info()

    def _largest_call(self, settings: Settings) -> int:
        """Windows per model call at most (the runtime cuts batches into such chunks)."""
        largest = settings.max_chunk_windows or (
            CPU_MAX_CHUNK if self.device.type == "cpu" else settings.max_batch_windows
        )
        return min(largest, settings.max_batch_windows)

    def _request_share(self, settings: Settings) -> int:
        return settings.max_request_queued_windows or self._largest_call(settings)

    def _warm_up(self) -> None:
        """Runs on the batcher's thread before it reports ready."""
        self.execution.warm_up()
        self._publish_model_info()

    @property
    def runtime(self) -> Runtime:
        """The runtime batches run on (eager, then compiled; see app/service/execution.py)."""
        return self.execution.runtime

    def _publish_model_info(self) -> None:
        runtime = self.runtime.info()
        self.metrics.model_info.info(
            {
                "model_id": self.checkpoint.model_id,
                "preset": self.checkpoint.metadata.preset,
                "architecture": self.checkpoint.metadata.architecture,
                "device": str(self.device),
                "dtype": self.dtype_name,
                "precision": runtime.precision,
                "channels_last": str(runtime.channels_last).lower(),
                "compile": self.settings.compile,
                "compiled": str(runtime.compiled).lower(),
                "execution": self.execution.name,
            }
        )

    # ----- readiness (the batcher stays this class's own business) ----------------------------

    @property
    def ready(self) -> bool:
        """Warmed up and serving: the batcher's worker runs and warm-up did not fail."""
        return self._batcher.ready

    @property
    def stopping(self) -> bool:
        """Shutting down: no new windows are accepted."""
        return self._batcher.stopping

    @property
    def warmup_error(self) -> str | None:
        """Why warm-up failed (the service then never turns ready), or None."""
        return self._batcher.warmup_error

    @property
    def running_batch_seconds(self) -> float:
        """How long the model call now running has taken (0 when none runs)."""
        return self._batcher.running_batch_seconds

    @property
    def stuck(self) -> str | None:
        """Why the process should be restarted (a model call running far longer than any
        batch takes: a hung kernel or GPU), or None."""
        running = self.running_batch_seconds
        bound = self.settings.stuck_batch_s
        if bound and running > bound:
            return (
                f"a batch has been running for {running:.0f} s (TAGGER_STUCK_BATCH_S is "
                f"{bound:g} s): the model call is stuck; restart the process"
            )
        return None

    @property
    def queued_windows(self) -> int:
        return self._batcher.queued_windows

    def stop_batching(self) -> None:
        """Stop the batcher (blocking): queued requests are answered 503 at once."""
        self._batcher.stop()

    @property
    def model_id(self) -> str:
        return self.checkpoint.model_id

    @property
    def dtype_name(self) -> str:
        if self.runtime.info().precision == "int8":  # an int8 artifact replaced the eager path
            return "int8 convolutions, float32 elsewhere"
        dtype = self.runtime.dtype
        return "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} (autocast)"

    async def start(self) -> None:
        """Start the decode workers and the batcher (whose warm-up runs in the background)."""
        await self._decoders.start()
        self._batcher.start(warmup=self.settings.warmup)

    async def aclose(self) -> None:
        self.execution.stop()
        await asyncio.to_thread(self.stop_batching)
        await self.fetcher.aclose()
        await self._decoders.close()
        if "explanations" in self.__dict__:  # made only if someone asked for one
            self.explanations.close()
        torch.set_num_threads(self._previous_threads)

    # ----- tagging ------------------------------------------------------------------------

    async def tag_url(self, url: str, options: TagOptions, *, started: float) -> TagResponse:
        self._check_options(options)
        fetched = await self.fetcher.fetch(url)
        return await self.tag_audio(
            fetched.data, options, started=started, fetch_seconds=fetched.seconds
        )

    async def tag_audio(
        self,
        data: bytes,
        options: TagOptions,
        *,
        started: float,
        fetch_seconds: float | None = None,
    ) -> TagResponse:
        """Tag one encoded audio file.

        Args:
            data: The file's bytes.
            options: top_k, threshold, segments.
            started: `time.monotonic()` when the request began; the deadline counts from it.
            fetch_seconds: Download time, for URL requests.
        """
        self._check_options(options)
        # A download was held to the fetch limit already; the upload limit is not its own.
        if fetch_seconds is None and len(data) > self.settings.max_upload_bytes:
            raise ProblemError(
                UPLOAD_TOO_LARGE,
                f"the file is {len(data) / 1e6:.1f} MB; the limit is "
                f"{self.settings.max_upload_bytes / 1e6:g} MB",
            )
        if not data:
            raise ProblemError(EMPTY_AUDIO, "the file is empty; send an audio file")
        if sniff_audio(data[:SNIFF_BYTES]) is None:
            raise ProblemError(
                UNSUPPORTED_MEDIA,
                f"the file is not audio in a supported format ({SUPPORTED_FORMATS}); the format "
                "is recognised from the content, not from the file name or content type",
            )
        self.metrics.input_bytes.observe(len(data))
        deadline = started + self.settings.request_deadline_s
        stream = self._open_stream(deadline)
        try:
            stream, decoded = await self._decode_into(stream, data)
            del data  # the worker has the file (the route still holds the upload until the end)
            stream.close()
            result = await stream.result()
        except BaseException as error:
            stream.cancel()
            raise self._as_problem(error) from None
        self.metrics.audio_seconds.inc(decoded.duration_seconds)
        self.metrics.queue_wait.observe(result.queue_seconds)
        timings = Timings(
            fetch_ms=None if fetch_seconds is None else fetch_seconds * 1000,
            decode_ms=decoded.seconds * 1000,
            queue_ms=result.queue_seconds * 1000,
            compute_ms=result.compute_seconds * 1000,
            total_ms=(time.monotonic() - started) * 1000,
        )
        return self._describe(result.scores, decoded, options, timings)

    def _check_options(self, options: TagOptions) -> tuple[int, ...]:
        """The outputs the request covers; a bad option raises its 400 first."""
        try:
            columns = self.vocabulary.select(options.taxonomy)
            self.vocabulary.synonyms(options.synonyms)
        except VocabularyError as error:
            raise vocabulary_problem(error) from None
        if not 1 <= options.top_k <= len(columns):
            of = "the vocabulary size" if options.taxonomy is None else f"{options.taxonomy}'s"
            raise ProblemError(
                BAD_REQUEST,
                f"top_k must be between 1 and {len(columns)} ({of} tags), got {options.top_k}",
            )
        return columns

    def _open_stream(self, deadline: float) -> WindowStream:
        try:
            return self._batcher.open(
                deadline=deadline, deadline_per_window_s=self._deadline_per_window_s
            )
        except BaseException as error:
            raise self._as_problem(error) from None

    async def _decode_into(
        self, stream: WindowStream, data: bytes
    ) -> tuple[WindowStream, _Decoded]:
        """Decode `data` in a worker process and put its windows into `stream` as they come.

        Returns the stream that holds the windows (a new one if the decoder started over).
        """
        window = self.model.audio.window_samples
        begun = time.monotonic()
        wait_s = max(0.0, stream.deadline - begun)  # for a free worker, within the deadline
        async with self._decoders.decode(data, wait_s=wait_s) as job:
            cutter = WindowCutter(window)
            async for chunk in job.chunks():
                if not isinstance(chunk, np.ndarray):  # RESTART_DECODE: the fallback decoder
                    stream.cancel("restarted")
                    stream = self._open_stream(stream.deadline)
                    cutter = WindowCutter(window)
                    continue
                windows = cutter.push(chunk)
                if len(windows):
                    await stream.put(torch.from_numpy(windows))
            await stream.put(torch.from_numpy(cutter.finish()))
        assert job.info is not None
        seconds = time.monotonic() - begun
        self.metrics.decode_duration.observe(seconds)
        return stream, _Decoded(job.info, cutter.samples, self.model.audio.sample_rate, seconds)

    def _as_problem(self, error: BaseException) -> BaseException:
        """The problem a failed request answers with (other exceptions pass unchanged)."""
        retry = {"Retry-After": str(self.settings.retry_after_s)}
        max_seconds = self.settings.max_audio_seconds
        if isinstance(error, DecodeFailedError):
            if error.kind == "too-long":
                return ProblemError(
                    AUDIO_TOO_LONG,
                    f"the audio is longer than the limit of {max_seconds:g} s; cut it into "
                    "shorter pieces",
                )
            if error.kind == "empty":
                return ProblemError(EMPTY_AUDIO, "the file decodes to no audio samples")
            if error.kind == "undecodable":
                return ProblemError(UNDECODABLE, str(error))
            logger.warning("decode worker failed on an upload: %s (%s)", error, error.kind)
            return ProblemError(
                DECODER_FAILED,
                f"{error}; the file is probably damaged or hostile. The decoder was replaced, "
                "other requests were not affected",
            )
        if isinstance(error, DeadlineExceededError | TimeoutError):
            return ProblemError(
                DEADLINE,
                f"the request did not finish within its deadline "
                f"({self.settings.request_deadline_s:g} s plus "
                f"{self.settings.deadline_s_per_audio_minute:g} s per audio minute) because the "
                "server is overloaded; retry later or send shorter audio",
                headers=retry,
            )
        if isinstance(error, BatchFailedError):
            return ProblemError(
                INFERENCE_FAILED,
                "the model failed on a batch holding this request's audio; the error is in the "
                "server log under this request id, and retrying may succeed",
            )
        if isinstance(error, BatcherStoppedError):
            return ProblemError(NOT_READY, "the service is shutting down", headers=retry)
        return error

    @property
    def embedding_spec(self) -> EmbeddingSpec:
        """The identity of this model's embeddings (model id, kind, dimension)."""
        return embedding_spec(self.model, self.model_id)

    def _describe(
        self,
        rows: Tensor,
        decoded: _Decoded,
        options: TagOptions,
        timings: Timings,
    ) -> TagResponse:
        # The model call returns scores and embedding in one row per window (model.embedding).
        window_scores, window_embeddings = split_rows(rows, len(self.tags))
        thresholds = decision_thresholds(self.thresholds, options.threshold)
        columns = self.vocabulary.select(options.taxonomy)
        best = top_tags(
            track_scores(window_scores),
            self.tags,
            thresholds,
            options.top_k,
            among=columns,
            one_per_group=self.vocabulary.synonyms(options.synonyms) == "one",
        )
        tags = [
            TagScore(
                **tag_fields(
                    decision.tag,
                    score=decision.score,
                    threshold=decision.threshold,
                    passes_threshold=decision.passes_threshold,
                )
            )
            for decision in best
        ]
        segments = None
        if options.segments:
            ids = [self.vocabulary.ids[i] for i in columns]
            window = self.model.audio.window_samples
            times = window_times(decoded.samples, window, decoded.sample_rate)
            segments = [
                Segment(
                    start=start,
                    end=end,
                    scores={ids[j]: float(row[i]) for j, i in enumerate(columns)},
                )
                for (start, end), row in zip(times, window_scores, strict=True)
            ]
        embedding = None
        if options.embedding and window_embeddings is not None:
            spec = self.embedding_spec
            vector = track_embedding(window_embeddings).tolist()
            embedding = Embedding(
                model_id=spec.model_id, kind=spec.kind, dim=spec.dim, vector=vector
            )
            for segment, window in zip(segments or [], window_embeddings, strict=False):
                segment.embedding = window.tolist()
        return TagResponse(
            model_id=self.model_id,
            duration_seconds=decoded.duration_seconds,
            windows=int(window_scores.shape[0]),
            window_seconds=self.model.audio.window_seconds,
            format=format_name(decoded.info.container),
            tags=tags,
            segments=segments,
            timings=timings,
            embedding=embedding,
        )

    # ----- evidence maps (app/service/explaining.py) ---------------------------------------

    @functools.cached_property
    def explanations(self) -> ExplanationRunner:
        """Made on the first explain request: nothing of it exists while nobody asks."""
        return ExplanationRunner(self.model, self.vocabulary, self.settings)

    async def tag_and_explain(
        self,
        data: bytes,
        options: TagOptions,
        explaining: ExplainOptions,
        *,
        started: float,
        fetch_seconds: float | None = None,
    ) -> TagResponse:
        """`tag_audio`, then evidence maps of the same audio (checked before any audio work).

        The audio is decoded a second time, by the same worker pool: explanations are rare, and
        this keeps `tag_audio` exactly what it is without them. The deadline follows the
        tagging rule (request_deadline_s plus deadline_s_per_audio_minute per minute).
        """
        self._check_options(options)
        self.explanations.check(explaining)
        response = await self.tag_audio(data, options, started=started, fetch_seconds=fetch_seconds)
        limit = self.settings.explain_max_audio_seconds
        if response.duration_seconds > limit:
            raise ProblemError(
                AUDIO_TOO_LONG,
                f"evidence maps are computed for audio up to {limit:g} s and this is "
                f"{response.duration_seconds:.0f} s; tag it without explain or send an excerpt",
            )
        deadline = (
            started
            + self.settings.request_deadline_s
            + self.settings.deadline_s_per_audio_minute * response.duration_seconds / 60.0
        )
        samples = await self._decode_samples(data, deadline)
        return await self.explanations.explain(samples, response, explaining, deadline=deadline)

    async def _decode_samples(self, data: bytes, deadline: float) -> npt.NDArray[np.float32]:
        """The whole waveform of `data` from the decode workers (for an explanation)."""
        chunks: list[npt.NDArray[np.float32]] = []
        try:
            wait_s = max(0.0, deadline - time.monotonic())
            async with self._decoders.decode(data, wait_s=wait_s) as job:
                async for chunk in job.chunks():
                    if not isinstance(chunk, np.ndarray):  # the fallback decoder starts over
                        chunks.clear()
                        continue
                    chunks.append(chunk)
        except BaseException as error:
            raise self._as_problem(error) from None
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    async def tag_url_and_explain(
        self, url: str, options: TagOptions, explaining: ExplainOptions, *, started: float
    ) -> TagResponse:
        self._check_options(options)
        self.explanations.check(explaining)
        fetched = await self.fetcher.fetch(url)
        return await self.tag_and_explain(
            fetched.data, options, explaining, started=started, fetch_seconds=fetched.seconds
        )

    # ----- descriptions -------------------------------------------------------------------

    def tags_info(self, taxonomy: str | None = None) -> TagsResponse:
        try:
            listing = self.vocabulary.listing(self.thresholds.tolist(), taxonomy)
        except VocabularyError as error:
            raise vocabulary_problem(error) from None
        return TagsResponse(model_id=self.model_id, **listing)

    def model_info(self) -> ModelInfo:
        return describe_model(self)
