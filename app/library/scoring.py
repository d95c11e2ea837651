"""Scores of local files for a library, from the model in this process or from a running service.

`LocalScorer` loads a checkpoint as `tagger tag` does and tags files with its batch tagger
(decoding ahead in threads, windows of several files in each batch). `ServiceScorer` sends each
file to a running service's `POST /tag`, a few at once so that the service's batcher can mix
their windows, and asks for every tag's score (`top_k` = the vocabulary size, `synonyms=all`).
Both give the same thing: the model's id, its vocabulary and thresholds, and one `Scored` per
file in input order; `tagger write-tags` uses the first, the beets plugin either.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from model.tags import Tag


class ScorerError(RuntimeError):
    """The model cannot be loaded or the service cannot be reached; the message says why."""


@dataclass(frozen=True)
class Scored:
    """One file's track scores in model output order, or why it has none."""

    path: str
    scores: tuple[float, ...] | None = None
    error: str | None = None
    duration_seconds: float = 0.0


class LocalScorer:
    """The checkpoint in this process (`tagger tag`'s model code, without compilation).

    Args:
        checkpoint: The .safetensors file; None for TAGGER_CHECKPOINT or the bundled default.
        device, precision: As `tagger tag --device/--precision`; None for TAGGER_* or auto.
        batch_windows: Windows per forward pass.
        threads: Torch threads; None for the CLI default (cores minus decode threads).
        decode_workers: Threads decoding ahead; None for the default.
    """

    def __init__(
        self,
        checkpoint: Path | None = None,
        *,
        device: str | None = None,
        precision: str | None = None,
        batch_windows: int = 8,
        threads: int | None = None,
        decode_workers: int | None = None,
    ) -> None:
        # Imported here: torch takes seconds, and a beets session that never tags should not pay.
        import warnings

        import torch
        from pydantic import ValidationError

        from app.pipeline.defaults import default_cli_threads, default_decode_workers
        from app.pipeline.settings import ModelSettings
        from model.checkpoint import CheckpointError, load_checkpoint
        from model.runtime import Runtime, RuntimeOptions, resolve_device

        # Expected for the reference front end (n_fft 512, 128 mels); says nothing about a run.
        warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
        given: dict[str, Any] = {"checkpoint": checkpoint, "device": device, "precision": precision}
        try:
            settings = ModelSettings(**{k: v for k, v in given.items() if v is not None})
            if not settings.checkpoint.is_file():
                raise ScorerError(f"checkpoint not found: {settings.checkpoint}")
            self.decode_workers = decode_workers or default_decode_workers()
            self.threads = (
                threads or settings.torch_threads or default_cli_threads(self.decode_workers)
            )
            self.device = resolve_device(settings.device)
            loaded = load_checkpoint(settings.checkpoint, device=self.device)
        except (ValidationError, CheckpointError, RuntimeError) as error:
            if isinstance(error, ScorerError):
                raise
            raise ScorerError(f"cannot load the model: {error}") from error
        if batch_windows < 1:
            raise ScorerError(f"batch windows must be at least 1, got {batch_windows}")
        self._torch = torch
        self.model_id = loaded.model_id
        self.tags: tuple[Tag, ...] = loaded.metadata.tags
        self.thresholds: tuple[float, ...] = tuple(loaded.metadata.thresholds)
        options = RuntimeOptions(
            precision=settings.precision,
            channels_last=settings.channels_last,
            compile="off",
            embeddings=False,
        )
        self._runtime = Runtime(loaded.model, self.device, options, max_batch=batch_windows)
        self._audio = loaded.model.audio
        self.batch_windows = batch_windows
        self.compute_seconds = 0.0

    def describe(self) -> str:
        info = self._runtime.info()
        return (
            f"{self.model_id} on {self.device} ({info.precision}), torch threads {self.threads}, "
            f"decode threads {self.decode_workers}"
        )

    def score(self, paths: Sequence[str]) -> Iterator[Scored]:
        """Tag `paths`, yielding one result per file in the same order."""
        from app.cli.batch_tagging import BatchTagger

        tagger = BatchTagger(
            self._runtime,
            window_samples=self._audio.window_samples,
            sample_rate=self._audio.sample_rate,
            batch_windows=self.batch_windows,
            decode_workers=self.decode_workers,
        )
        previous = self._torch.get_num_threads()
        self._torch.set_num_threads(self.threads)
        try:
            for result in tagger.tag(paths):
                if not result.ok or result.track_scores is None:
                    yield Scored(result.path, error=result.error or "not scored")
                else:
                    scores = tuple(float(s) for s in result.track_scores.tolist())
                    yield Scored(result.path, scores, duration_seconds=result.duration_seconds)
        finally:
            self._torch.set_num_threads(previous)
            self.compute_seconds += tagger.compute_seconds


class ServiceScorer:
    """A running tagger service, e.g. `http://127.0.0.1:8000` (`tagger serve`).

    Args:
        url: The service's base address.
        concurrency: Files in flight at once (the service batches their windows together).
        timeout: Seconds per request.
    """

    def __init__(self, url: str, *, concurrency: int = 4, timeout: float = 600.0) -> None:
        if concurrency < 1:
            raise ScorerError(f"concurrency must be at least 1, got {concurrency}")
        self.url = url.rstrip("/")
        self.concurrency = concurrency
        self._client = httpx.Client(base_url=self.url, timeout=timeout)
        try:
            listing = self._client.get("/tags")
            listing.raise_for_status()
            model = self._client.get("/model")
            model.raise_for_status()
        except httpx.HTTPError as error:
            raise ScorerError(f"cannot reach the tagger service at {self.url}: {error}") from error
        entries = listing.json()["tags"]
        self.tags = tuple(Tag.from_dict(entry) for entry in entries)
        self.thresholds = tuple(float(entry["threshold"]) for entry in entries)
        self.model_id = str(model.json()["model_id"])
        self._index = {tag.id: i for i, tag in enumerate(self.tags)}

    def describe(self) -> str:
        return f"{self.model_id} at {self.url}, {self.concurrency} files at once"

    def close(self) -> None:
        self._client.close()

    def _one(self, path: str) -> Scored:
        try:
            with open(path, "rb") as handle:
                response = self._client.post(
                    "/tag",
                    params={"top_k": len(self.tags), "synonyms": "all"},
                    files={"file": (Path(path).name, handle)},
                )
        except OSError as error:
            return Scored(path, error=f"cannot read the file: {error.strerror or error}")
        except httpx.HTTPError as error:
            return Scored(path, error=f"the service did not answer: {error}")
        if response.status_code != 200:
            detail = _problem_detail(response)
            return Scored(path, error=f"the service refused it ({response.status_code}): {detail}")
        body = response.json()
        scores = [0.0] * len(self.tags)
        for entry in body["tags"]:
            scores[self._index[entry["tag"]]] = float(entry["score"])
        return Scored(path, tuple(scores), duration_seconds=float(body["duration_seconds"]))

    def score(self, paths: Sequence[str]) -> Iterator[Scored]:
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="tagger-client") as pool:
            yield from pool.map(self._one, paths)


def _problem_detail(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail") or body.get("title") or body) if isinstance(body, dict) else ""
