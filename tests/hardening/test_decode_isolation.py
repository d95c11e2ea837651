"""What decoding in a worker process costs per request (`make hardening` only: it measures).

The same 30-second real-music mp3 is decoded in this process (`decode_audio`) and through a
`DecoderPool` worker (file over a pipe, PCM back), alternately, so both see the same load.
Besides the figures, the check is that the worker returns the very same samples.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from app.service.decoders import DecoderPool, WorkerOptions
from model.audio.decode import decode_audio
from tests.hardening.test_long_audio import _real_mp3
from tests.hardening.tools import long_only, record

ROUNDS = 30


async def _through_worker(pool: DecoderPool, data: bytes) -> np.ndarray:
    chunks = []
    async with pool.decode(data, wait_s=30) as job:
        async for chunk in job.chunks():
            assert isinstance(chunk, np.ndarray)
            chunks.append(chunk)
    return np.concatenate(chunks)


@long_only
def test_decode_isolation_costs_little_per_request(music: Path) -> None:
    whole, seconds = _real_mp3(music)
    clip = whole[: int(len(whole) * 30 / seconds)]

    async def measure() -> tuple[list[float], list[float]]:
        options = WorkerOptions(sample_rate=16000, max_seconds=7200, memory_mb=1024, timeout_s=30)
        pool = DecoderPool(1, options)
        await pool.start()
        try:
            in_process, isolated = [], []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                expected = decode_audio(clip, sample_rate=16000).samples
                in_process.append(time.perf_counter() - started)
                started = time.perf_counter()
                samples = await _through_worker(pool, clip)
                isolated.append(time.perf_counter() - started)
                np.testing.assert_array_equal(samples, expected)
            return in_process, isolated
        finally:
            await pool.close()

    in_process, isolated = asyncio.run(measure())
    local, worker = statistics.median(in_process), statistics.median(isolated)
    record(
        "decode_isolation",
        rounds=ROUNDS,
        clip_seconds=30,
        in_process_ms=round(local * 1000, 1),
        worker_ms=round(worker * 1000, 1),
        overhead_ms=round((worker - local) * 1000, 1),
        pcm_bytes=30 * 16000 * 4,
    )
