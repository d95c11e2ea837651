"""Prometheus metrics, `tagger_` prefix, base units (seconds, bytes), histograms not summaries.

Each application owns its own registry, so several apps in one process (tests) do not collide
and `/metrics` shows exactly one service's numbers. Average batch size is
`tagger_batch_size_windows_sum / tagger_batch_size_windows_count`.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# `*_created` timestamps double the series count and no dashboard here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# End-to-end and fetch times span milliseconds to a minute; model and queue times are shorter.
_REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)


class Metrics:
    """All metrics of one service instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tagger_requests",
            "Requests by endpoint and outcome (ok, bad_input, too_large, queue_full, deadline, "
            "cancelled, fetch_error, forbidden_url, inference_error, not_found, internal, "
            "body_timeout, client_limit).",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.tag_set_reloads = Counter(
            "tagger_tag_set_reloads",
            "Tag set reloads (SIGHUP or changed files) by outcome: ok, failed (kept serving "
            "the previous ones).",
            ["outcome"],
            registry=r,
        )
        self.request_duration = Histogram(
            "tagger_request_duration_seconds",
            "Time from request start to response, by endpoint.",
            ["endpoint"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "tagger_inflight_requests", "Requests being handled right now.", registry=r
        )
        self.queue_wait = Histogram(
            "tagger_queue_wait_seconds",
            "Per request: time its windows spent queued, not being computed.",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.batch_compute = Histogram(
            "tagger_batch_compute_seconds",
            "Per batch: model time (including host/device copies).",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "tagger_batch_size_windows",
            "Per batch: number of windows computed together.",
            buckets=_BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.queued_windows = Gauge(
            "tagger_queued_windows", "Windows waiting for the model.", registry=r
        )
        self.dropped_windows = Counter(
            "tagger_dropped_windows",
            "Queued windows dropped before compute, by reason (deadline, cancelled, failed).",
            ["reason"],
            registry=r,
        )
        self.cut_connections = Counter(
            "tagger_cut_connections",
            "Connections answered 408 and closed because the request body stalled (idle) or "
            "arrived below the minimum rate (slow).",
            ["reason"],
            registry=r,
        )
        self.failed_batches = Counter(
            "tagger_failed_batches", "Batches whose model call raised.", registry=r
        )
        self.audio_seconds = Counter(
            "tagger_audio_seconds",
            "Seconds of decoded audio tagged successfully.",
            registry=r,
        )
        self.decode_duration = Histogram(
            "tagger_decode_duration_seconds",
            "Time from handing a file to a decode worker to its last sample (streaming: this "
            "includes waiting for the model to take the windows of long recordings).",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.decoder_restarts = Counter(
            "tagger_decoder_restarts",
            "Decode worker processes killed and replaced: crashed (e.g. a segfault in FFmpeg), "
            "timeout (no progress), memory (over its limit), abandoned (its request left "
            "midway), exited.",
            ["reason"],
            registry=r,
        )
        self.idle_decoders = Gauge(
            "tagger_idle_decoders", "Decode worker processes waiting for a file.", registry=r
        )
        self.fetch_duration = Histogram(
            "tagger_fetch_duration_seconds",
            "Time to download one URL, redirects included, by outcome.",
            ["outcome"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.input_bytes = Histogram(
            "tagger_input_bytes",
            "Size of uploaded or fetched audio files.",
            buckets=(1e4, 1e5, 5e5, 1e6, 5e6, 1e7, 2.5e7, 5e7, 1e8),
            registry=r,
        )
        self.ready = Gauge(
            "tagger_ready", "1 once the model is loaded and warmed up, else 0.", registry=r
        )
        self.model_info = Info("tagger_model", "The loaded model.", registry=r)
        self.gpu_memory = Gauge(
            "tagger_gpu_memory_allocated_bytes",
            "Memory allocated by torch on the model's GPU (0 on CPU).",
            registry=r,
        )
        # process_resident_memory_bytes, process_cpu_seconds_total, open file descriptors...
        ProcessCollector(registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
