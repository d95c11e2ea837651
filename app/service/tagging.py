"""The tagging pipeline behind the routes: sniff, decode, window, batch, score, describe.

Plain Python (no FastAPI): the routes only parse HTTP and call `TaggingService`. Failures are
raised as `ProblemError`s that already say what the caller should do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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
from app.service.batcher import (
    Batcher,
    BatcherStoppedError,
    BatchFailedError,
    BatchResult,
    DeadlineExceededError,
    QueueFullError,
    TooManyWindowsError,
)
from app.service.execution import Execution
from app.service.fetch import Fetcher, Resolver
from app.service.metrics import Metrics
from app.service.model_info import describe_model
from app.service.problems import (
    AUDIO_TOO_LONG,
    BAD_REQUEST,
    DEADLINE,
    EMPTY_AUDIO,
    INFERENCE_FAILED,
    NOT_READY,
    QUEUE_FULL,
    UNDECODABLE,
    UNSUPPORTED_MEDIA,
    UPLOAD_TOO_LARGE,
    ProblemError,
)
from app.service.schemas import (
    ModelInfo,
    Segment,
    TagInfo,
    TagResponse,
    TagScore,
    TagsResponse,
    Timings,
)
from app.service.settings import Settings
from model.audio.decode import (
    AudioDecodeError,
    AudioTooLongError,
    DecodedAudio,
    EmptyAudioError,
    decode_audio,
)
from model.audio.sniff import SNIFF_BYTES, SUPPORTED_FORMATS, sniff_audio
from model.checkpoint import load_checkpoint
from model.inference import split_windows
from model.runtime import Runtime, RuntimeOptions, resolve_device

logger = logging.getLogger("tagger.service")

InferWrapper = Callable[[InferFn], InferFn]


@dataclass(frozen=True)
class TagOptions:
    """What the caller asked for besides the audio.

    Attributes:
        top_k: How many tags to return, best first.
        threshold: One decision threshold for all tags, or None for the checkpoint's per-tag ones.
        segments: Whether to return every window's scores too.
    """

    top_k: int = 10
    threshold: float | None = None
    segments: bool = False


def runtime_options(settings: Settings) -> RuntimeOptions:
    return RuntimeOptions(
        precision=settings.precision,
        channels_last=settings.channels_last,
        compile=settings.compile,
        max_chunk=settings.max_chunk_windows,
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
        self.device = resolve_device(settings.device)
        self.torch_threads = resolve_threads(settings.torch_threads)
        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.torch_threads)
        if self.device.type == "cuda":
            # Batches only ever take the few warmed-up shapes, so autotuning pays off.
            torch.backends.cudnn.benchmark = True
        logger.info("loading checkpoint %s on %s", settings.checkpoint, self.device)
        loading = time.monotonic()
        self.checkpoint = load_checkpoint(settings.checkpoint, device=self.device)
        logger.info(
            "loaded %s (%s, %.1fM parameters) in %.1f s",
            self.checkpoint.model_id,
            self.checkpoint.metadata.preset,
            self.checkpoint.model.num_parameters() / 1e6,
            time.monotonic() - loading,
        )
        self.model = self.checkpoint.model
        self.tags = self.checkpoint.metadata.tags
        self.thresholds = torch.tensor(self.checkpoint.metadata.thresholds, dtype=torch.float32)
        options = runtime_options(settings)
        self.int8 = plan_int8(self.checkpoint, options, self.device)
        self.execution = Execution(
            self.model,
            self.device,
            options,
            max_batch=settings.max_batch_windows,
            on_switch=self._publish_model_info,
            int8=self.int8,
        )
        infer: InferFn = self.execution
        self._batcher = Batcher(
            wrap_infer(infer) if wrap_infer else infer,
            window_samples=self.model.audio.window_samples,
            max_batch_windows=settings.max_batch_windows,
            warm_up=self._warm_up,
            max_wait_s=settings.max_wait_ms / 1000.0,
            max_queued_windows=settings.max_queued_windows,
            metrics=metrics,
            pin_memory=self.device.type == "cuda",
        )
        self.fetcher = Fetcher(settings, resolver=resolver, metrics=metrics)
        # The pool size is the decode concurrency limit; a request cancelled while its decode
        # still waits for a thread is removed from the pool's queue.
        self._decoders = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_decodes, thread_name_prefix="tagger-decode"
        )
        metrics.ready.set_function(lambda: float(self.ready))
        if self.device.type == "cuda":
            device = self.device
            metrics.gpu_memory.set_function(lambda: float(torch.cuda.memory_allocated(device)))
        self._publish_model_info()

    def _warm_up(self) -> None:
        """Runs on the batcher's thread before it reports ready."""
        self.execution.warm_up()
        self._publish_model_info()

    @property
    def runtime(self) -> Runtime:
        """The runtime batches run on now (eager, then compiled; see app/service/execution.py)."""
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
        dtype = self.runtime.dtype
        return "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} (autocast)"

    def start(self) -> None:
        self._batcher.start(warmup=self.settings.warmup)

    async def aclose(self) -> None:
        self.execution.stop()
        await asyncio.to_thread(self.stop_batching)
        await self.fetcher.aclose()
        self._decoders.shutdown(wait=False, cancel_futures=True)
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
        decoded, decode_seconds = await self._decode(data)
        samples = torch.from_numpy(decoded.samples)
        window = self.model.audio.window_samples
        windows = split_windows(samples, window)
        deadline = started + self.settings.request_deadline_s
        result = await self._batch(windows, deadline)
        self.metrics.audio_seconds.inc(decoded.duration_seconds)
        self.metrics.queue_wait.observe(result.queue_seconds)
        timings = Timings(
            fetch_ms=None if fetch_seconds is None else fetch_seconds * 1000,
            decode_ms=decode_seconds * 1000,
            queue_ms=result.queue_seconds * 1000,
            compute_ms=result.compute_seconds * 1000,
            total_ms=(time.monotonic() - started) * 1000,
        )
        return self._describe(result.scores, decoded, options, timings)

    def _check_options(self, options: TagOptions) -> None:
        if not 1 <= options.top_k <= len(self.tags):
            raise ProblemError(
                BAD_REQUEST,
                f"top_k must be between 1 and {len(self.tags)} (the vocabulary size), "
                f"got {options.top_k}",
            )

    async def _decode(self, data: bytes) -> tuple[DecodedAudio, float]:
        loop = asyncio.get_running_loop()
        sample_rate = self.model.audio.sample_rate
        max_seconds = self.settings.max_audio_seconds

        def decode() -> tuple[DecodedAudio, float]:
            begun = time.monotonic()  # measured in the thread: waiting for a slot is not decoding
            decoded = decode_audio(data, sample_rate=sample_rate, max_seconds=max_seconds)
            return decoded, time.monotonic() - begun

        try:
            decoded, seconds = await loop.run_in_executor(self._decoders, decode)
        except AudioTooLongError:
            raise ProblemError(
                AUDIO_TOO_LONG,
                f"the audio is longer than the limit of {max_seconds:g} s; cut it into shorter "
                "pieces",
            ) from None
        except EmptyAudioError:
            raise ProblemError(EMPTY_AUDIO, "the file decodes to no audio samples") from None
        except AudioDecodeError as error:
            raise ProblemError(UNDECODABLE, f"{error}") from None
        except Exception:  # a decoder tripping over hostile input is still the input's fault
            logger.warning("decoder raised on an upload", exc_info=True)
            raise ProblemError(
                UNDECODABLE, "could not decode the audio: the file is corrupted or truncated"
            ) from None
        self.metrics.decode_duration.observe(seconds)
        return decoded, seconds

    async def _batch(self, windows: Tensor, deadline: float) -> BatchResult:
        retry = {"Retry-After": str(self.settings.retry_after_s)}
        try:
            return await self._batcher.submit(windows, deadline=deadline)
        except QueueFullError as error:
            raise ProblemError(
                QUEUE_FULL,
                f"the server is busy ({error.queued} of {error.capacity} analysis windows "
                f"queued, this request needs {error.windows}); retry after "
                f"{self.settings.retry_after_s} s",
                headers=retry,
            ) from None
        except TooManyWindowsError as error:
            raise ProblemError(
                AUDIO_TOO_LONG,
                f"the audio needs {error.windows} analysis windows but the server queues at "
                f"most {error.capacity}; send a shorter file",
            ) from None
        except DeadlineExceededError:
            raise ProblemError(
                DEADLINE,
                f"the request did not finish within {self.settings.request_deadline_s:g} s "
                "because the server is overloaded; retry later or send shorter audio",
                headers=retry,
            ) from None
        except BatchFailedError:
            raise ProblemError(
                INFERENCE_FAILED,
                "the model failed on a batch holding this request's audio; the error is in the "
                "server log under this request id, and retrying may succeed",
            ) from None
        except BatcherStoppedError:
            raise ProblemError(NOT_READY, "the service is shutting down", headers=retry) from None

    def _describe(
        self,
        window_scores: Tensor,
        decoded: DecodedAudio,
        options: TagOptions,
        timings: Timings,
    ) -> TagResponse:
        thresholds = decision_thresholds(self.thresholds, options.threshold)
        best = top_tags(track_scores(window_scores), self.tags, thresholds, options.top_k)
        tags = [
            TagScore(
                tag=decision.tag.name,
                score=decision.score,
                category=decision.tag.category,
                synonym_group=decision.tag.synonym_group,
                threshold=decision.threshold,
                passes_threshold=decision.passes_threshold,
            )
            for decision in best
        ]
        segments = None
        if options.segments:
            names = [tag.name for tag in self.tags]
            window = self.model.audio.window_samples
            times = window_times(decoded.samples.shape[0], window, decoded.sample_rate)
            segments = [
                Segment(start=start, end=end, scores=dict(zip(names, row.tolist(), strict=True)))
                for (start, end), row in zip(times, window_scores, strict=True)
            ]
        return TagResponse(
            model_id=self.model_id,
            duration_seconds=decoded.duration_seconds,
            windows=int(window_scores.shape[0]),
            window_seconds=self.model.audio.window_seconds,
            format=format_name(decoded.container),
            tags=tags,
            segments=segments,
            timings=timings,
        )

    # ----- descriptions -------------------------------------------------------------------

    def tags_info(self) -> TagsResponse:
        return TagsResponse(
            model_id=self.model_id,
            tags=[
                TagInfo(
                    index=i,
                    name=tag.name,
                    category=tag.category,
                    synonym_group=tag.synonym_group,
                    threshold=float(self.thresholds[i]),
                )
                for i, tag in enumerate(self.tags)
            ],
        )

    def model_info(self) -> ModelInfo:
        return describe_model(self)
