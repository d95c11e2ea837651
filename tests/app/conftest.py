"""Shared fixtures: an untrained q2l-small checkpoint, in-process apps and a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi import FastAPI

from app.service.app import create_app
from app.service.settings import Settings
from model.checkpoint import save_checkpoint
from model.tags import MTAT_TAGS, TWO_VOCABULARY_TAGS
from model.zoo import build_model, config_for
from tests.app.servers import FileServer, ServiceProcess

# The checkpoint's first tag gets its own threshold, to see per-tag thresholds come through.
GUITAR_THRESHOLD = 0.25
PROVENANCE = {
    "training_data": "none: untrained weights for plumbing tests",
    "metrics": {"roc_auc": None},
}


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model("q2l-small").eval()
    thresholds = [GUITAR_THRESHOLD] + [0.5] * (len(MTAT_TAGS) - 1)
    path = tmp_path_factory.mktemp("checkpoint") / "q2l-small.safetensors"
    return save_checkpoint(
        path, model, preset="q2l-small", thresholds=thresholds, provenance=PROVENANCE
    )


# msd/rock (output 50) gets its own threshold in the two-vocabulary checkpoint.
MSD_ROCK_THRESHOLD = 0.375  # exact in float32, as thresholds are served


@pytest.fixture(scope="session")
def two_vocabulary_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layout of the default model (v2, v3): q2l-small with the 50 MTT and then the 50 MSD tags
    (random weights)."""
    torch.manual_seed(16)
    config = config_for("q2l-small", {"n_classes": len(TWO_VOCABULARY_TAGS)})
    model = build_model("q2l-small", config).eval()
    thresholds = [0.5] * 50 + [MSD_ROCK_THRESHOLD] + [0.5] * 49
    path = tmp_path_factory.mktemp("two-vocabularies") / "q2l-small-mtt-msd.safetensors"
    return save_checkpoint(
        path,
        model,
        preset="q2l-small",
        tags=TWO_VOCABULARY_TAGS,
        thresholds=thresholds,
        provenance=PROVENANCE,
    )


def settings_for(checkpoint: Path, **overrides: Any) -> Settings:
    """Small, fast settings for in-process tests."""
    values: dict[str, Any] = {
        "checkpoint": checkpoint,
        "max_batch_windows": 4,
        "max_wait_ms": 2.0,
        "max_queued_windows": 64,
        "torch_threads": 1,
        # Compiling every shape takes a minute; tests/model/test_runtime.py covers it.
        "compile": "off",
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_app(
    settings: Settings, *, ready: bool = True, **kwargs: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with its lifespan running and an in-process client for it."""
    app = create_app(settings, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tagger.test") as client:
            if ready:
                await wait_ready(client)
            yield app, client


async def wait_ready(client: httpx.AsyncClient) -> None:
    async with asyncio.timeout(60):
        # Polling over HTTP, as a readiness probe does.
        while (await client.get("/readyz")).status_code != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


MAIN_SERVER_SETTINGS: dict[str, Any] = {
    "max_batch_windows": 8,
    # Long enough for concurrent test requests to meet in one batch.
    "max_wait_ms": 150,
    "max_upload_bytes": 1_500_000,
    "max_audio_seconds": 20,
    "allow_private_addresses": True,
    "fetch_allowed_ports": [],
    "fetch_timeout_s": 1.5,
    "max_fetch_bytes": 1_500_000,
    "torch_threads": 1,
}


@pytest.fixture(scope="session")
def server(checkpoint: Path) -> Iterator[ServiceProcess]:
    """The real service (uvicorn in a subprocess) with test-sized limits."""
    process = ServiceProcess({"checkpoint": str(checkpoint), **MAIN_SERVER_SETTINGS})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
