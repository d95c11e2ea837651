"""Every knob of the service in one pydantic-settings class, read from `TAGGER_*` variables.

`Settings()` reads the environment (`TAGGER_MAX_BATCH_WINDOWS=32`, ...); keyword arguments win
over the environment, so tests and embedders write `Settings(checkpoint=path, max_wait_ms=2)`.
List-valued settings take JSON in the environment: `TAGGER_FETCH_ALLOWED_PORTS='[80, 443]'`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import limits
from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from app.pipeline.defaults import default_decode_workers
from app.pipeline.settings import ModelSettings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(ModelSettings):
    """Service configuration; see docs/service.md for the table with defaults."""

    model_config = SettingsConfigDict(env_prefix="TAGGER_", extra="forbid", frozen=True)

    # Model and device: checkpoint, device, precision, channels_last and torch_threads come
    # from ModelSettings (shared with `tagger tag`).
    compile: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Run compiled graphs (AOTInductor, built out of process and cached): "
        "'auto' serves eagerly until they are built and stays eager if building fails (e.g. no "
        "C++ compiler); with 'on' the service is ready only once they run, and if building "
        "fails it never turns ready and /readyz says why.",
    )
    compile_cache_dir: Path | None = Field(
        default=None,
        description="Where compiled graphs are cached (built by a child process or by "
        "`tagger compile`); unset: $XDG_CACHE_HOME/music-tagger/compiled, else "
        "~/.cache/music-tagger/compiled.",
    )
    max_chunk_windows: int = Field(
        default=0,
        ge=0,
        description="Largest batch per model call (batches are split into power-of-two chunks); "
        "0 means 8 on CPU, max_batch_windows on CUDA.",
    )
    # Dynamic batching; the unit is one analysis window, not one request.
    max_batch_windows: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Largest batch of windows; batches also stop at the largest model call "
        "(max_chunk_windows), since a bigger one runs as several calls that all its requests "
        "wait for.",
    )
    max_wait_ms: float = Field(default=5.0, ge=0.0, le=10_000.0)
    max_queued_windows: int = Field(
        default=1024,
        ge=1,
        description="Windows of all requests queued at once; a request's windows that do not "
        "fit wait for room within its deadline.",
    )
    max_request_queued_windows: int = Field(
        default=0,
        ge=0,
        description="Windows one request may have queued at once: a long recording enters the "
        "batcher a few windows at a time, so batches stay short and other requests join the "
        "next one. 0 means the largest model call (8 windows on CPU, max_batch_windows on CUDA).",
    )
    request_deadline_s: float = Field(
        default=60.0, gt=0.0, description="A request still waiting after this long gets 504."
    )
    deadline_s_per_audio_minute: float = Field(
        default=10.0,
        ge=0.0,
        description="Each minute of decoded audio extends its request's deadline by this "
        "much, so long recordings get the time they need (two hours: 20 minutes more).",
    )
    retry_after_s: int = Field(default=1, ge=1, description="Retry-After sent with 503.")
    warmup: bool = Field(default=True, description="Run every batch shape once before ready.")

    # Input limits.
    max_upload_bytes: int = Field(default=200_000_000, ge=1)
    max_audio_seconds: float = Field(
        default=7200.0, gt=0.0, description="Longest audio tagged; longer files get 413."
    )
    max_concurrent_decodes: int = Field(
        default_factory=default_decode_workers,
        ge=1,
        description="Decode worker processes: files decoded at once. From the cores: one up "
        "to 4 (a second one competes with the model for the same cores and measured slower on "
        "2), two above, so one long recording does not hold every other request back.",
    )
    decode_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        description="A decode worker that sends nothing for this long while the service waits "
        "for it is killed and replaced; its request gets 422.",
    )
    decode_memory_mb: int = Field(
        default=1024,
        ge=128,
        description="Address-space limit of each decode worker process (it holds one file).",
    )
    decode_fault_injection: bool = Field(
        default=False,
        description="Tests only: decode workers crash, hang or exhaust memory on files "
        "carrying a fault marker (see app/service/decode_worker.py).",
    )
    max_inflight_requests: int = Field(
        default=32,
        ge=1,
        description="Tagging requests in progress at once; more get 503 before their body is "
        "read. Bounds memory (each holds its upload) and the backlog in front of the decoders.",
    )

    max_client_share: float = Field(
        default=0.25,
        gt=0.0,
        le=1.0,
        description="Share of max_inflight_requests one client address may hold (at least one "
        "request), counting requests still sending their body; more get 429. 1 means no "
        "per-client cap.",
    )
    body_idle_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        description="A request body that sends no bytes for this long is answered 408 and its "
        "connection closed.",
    )
    min_body_rate_bytes_s: float = Field(
        default=2000.0,
        ge=0.0,
        description="After body_rate_grace_s, a body arriving slower than this on average is "
        "answered 408 and its connection closed; 0 turns the check off.",
    )
    body_rate_grace_s: float = Field(
        default=10.0, ge=0.0, description="How long a body may arrive at any rate."
    )

    # Tagging by URL.
    fetch_timeout_s: float = Field(default=30.0, gt=0.0)
    fetch_connect_timeout_s: float = Field(default=5.0, gt=0.0)
    max_fetch_bytes: int = Field(default=200_000_000, ge=1)
    max_redirects: int = Field(default=3, ge=0, le=10)
    max_concurrent_fetches: int = Field(default=8, ge=1)
    allow_private_addresses: bool = Field(
        default=False,
        description="Let URLs reach private, loopback and other non-global addresses (unsafe).",
    )
    fetch_allowed_networks: list[IPNetwork] = Field(
        default_factory=list,
        description="Extra networks URLs may reach although they are not global (CIDR list).",
    )
    fetch_allowed_ports: list[int] = Field(
        default_factory=lambda: [80, 443],
        description="Ports URLs may use; an empty list allows any port.",
    )

    # Abuse and shutdown.
    rate_limit: str | None = Field(
        default=None,
        description="Per-client limit on each tagging endpoint, e.g. '60/minute' (off when unset).",
    )
    shutdown_drain_s: float = Field(
        default=2.0,
        ge=0.0,
        description="After SIGTERM, /readyz reports unready for this long while requests are "
        "still accepted, so load balancers stop sending before the listener closes.",
    )
    shutdown_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        description="Then in-flight requests get this long to finish; requests still queued "
        "after it are answered 503.",
    )

    # Liveness: what makes the process fail its health check or end itself.
    stuck_batch_s: float = Field(
        default=120.0,
        ge=0.0,
        description="/healthz answers 503 once one model call has run this long (a batch of "
        "windows takes well under 10 s even on a slow CPU): the batcher is stuck on a hung "
        "kernel or GPU and the process must be restarted. 0 disables the check.",
    )
    watchdog_s: float = Field(
        default=30.0,
        ge=0.0,
        description="The server process ends itself (status 1, every thread's stack on "
        "stderr) when its event loop has not run for this long, or when a batch has been "
        "stuck this long beyond stuck_batch_s, so that a restart policy (Docker, systemd, "
        "Kubernetes) replaces a frozen process. 0 disables the watchdog.",
    )
    shutdown_hard_limit_s: float = Field(
        default=25.0,
        gt=0.0,
        description="After SIGTERM, the process exits (status 70, one log line saying why) "
        "if it has not stopped within this long, e.g. because a batch is stuck; keep it "
        "below the orchestrator's grace period (Kubernetes and compose here: 30 s).",
    )

    # Evidence maps (explain=true); docs/explanations.md.
    max_concurrent_explanations: int = Field(
        default=1,
        ge=1,
        description="Explanations computed at once (each is a model call outside the batcher, "
        "with gradients); more get 503.",
    )
    explain_max_tags: int = Field(default=5, ge=1, description="Tags one request may explain.")
    explain_max_audio_seconds: float = Field(
        default=900.0,
        gt=0.0,
        description="Longest audio explained (a backward pass per window and tag); longer "
        "files get 413 when explain is asked for and are tagged as usual without it.",
    )
    explain_max_columns: int = Field(
        default=256,
        ge=8,
        le=4096,
        description="Time columns of an evidence map at most; longer tracks average steps.",
    )

    # Similarity search (docs/similarity.md).
    tag_sets_poll_s: float = Field(
        default=5.0,
        ge=0,
        description="Check the files TAGGER_TAG_SETS names this often (seconds) and reload the "
        "tag sets when they change; 0 reloads on SIGHUP only.",
    )
    catalog: Path | None = Field(
        default=None,
        description="A catalogue built by `tagger index build` (SQLite file), opened read-only "
        "for POST /similar and GET /catalog/...; checked at start-up.",
    )

    # Server and logs.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="Log lines as JSON or readable text; auto: text on a terminal, else JSON.",
    )

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _blank_is_off(cls, value: object) -> object:
        # TAGGER_RATE_LIMIT= (set but empty) means off, as unset does.
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.max_queued_windows < self.max_batch_windows:
            raise ValueError(
                f"max_queued_windows ({self.max_queued_windows}) must be at least "
                f"max_batch_windows ({self.max_batch_windows})"
            )
        largest_file = max(self.max_upload_bytes, self.max_fetch_bytes) / 2**20
        if self.decode_memory_mb < largest_file + 256:
            raise ValueError(
                f"decode_memory_mb ({self.decode_memory_mb}) must leave room for the largest "
                f"file a worker holds ({largest_file:.0f} MB) plus 256 MB for the decoder; "
                "raise it or lower max_upload_bytes/max_fetch_bytes"
            )
        if self.rate_limit is not None:
            try:
                limits.parse_many(self.rate_limit)
            except ValueError:
                raise ValueError(
                    f"rate_limit must look like '60/minute' or '10/second;300/hour', got "
                    f"{self.rate_limit!r}"
                ) from None
        return self
