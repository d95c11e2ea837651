"""A pool of decode worker processes, and the errors a decode ends with.

Each worker (`app.service.decode_worker`) decodes one file at a time and streams its PCM back.
A request leases a worker, sends the file, and iterates the chunks while it cuts them into
windows; backpressure is the pipe itself (a worker whose chunks are not read blocks on write).

A worker that dies (a segfault in FFmpeg), sends nothing for `timeout_s` while the service waits
for it (a hang), or reports that it ran out of memory is killed and replaced; only its request
fails, with a `DecodeFailedError` that says which. A request that stops reading midway (its
client left, its deadline passed) also gets its worker replaced, since that worker is still busy
with the abandoned file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from app.service.decode_worker import DONE, FAILED, HEADER, HELLO, JOB, PCM, RESTART
from app.service.metrics import Metrics

logger = logging.getLogger("tagger.decoders")

_WRITE_PIECE = 1 << 20
# Failures after which the worker is still in a known state and serves the next file.
CLEAN_REFUSALS = frozenset({"too-long", "empty", "undecodable"})
# A chunk is a mono float32 array, or RESTART_DECODE: drop the chunks before it.
RESTART_DECODE = "restart"
DecodedChunk = np.ndarray | str


class DecodeFailedError(Exception):
    """The file could not be decoded.

    Attributes:
        kind: "too-long", "empty", "undecodable", "memory", "crashed" or "timeout".
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class DecodeInfo:
    """How a finished decode read the file."""

    decoder: str
    container: str


@dataclass(frozen=True)
class WorkerOptions:
    """What every worker of a pool is started with.

    Attributes:
        sample_rate: Hz of the PCM it returns.
        max_seconds: Longest audio it decodes; longer files fail as "too-long".
        memory_mb: Its address-space limit.
        timeout_s: How long the service waits for its next message before killing it.
        fault_injection: Tests only: honour the fault markers of `app.service.decode_worker`.
    """

    sample_rate: int
    max_seconds: float
    memory_mb: int
    timeout_s: float
    fault_injection: bool = False


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdin is not None
        assert process.stdout is not None
        self.stdin = process.stdin
        self.stdout = process.stdout

    async def read(self) -> tuple[bytes, bytes]:
        """The next message: kind and payload (callers bound the wait)."""
        kind, size = HEADER.unpack(await self.stdout.readexactly(HEADER.size))
        return kind, await self.stdout.readexactly(size) if size else b""

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


class DecodeJob:
    """One file being decoded by a leased worker: iterate `chunks()`, then read `info`."""

    def __init__(self, pool: DecoderPool, worker: _Worker, data: bytes) -> None:
        self._pool = pool
        self._worker = worker
        self._data = data
        self.info: DecodeInfo | None = None
        self.samples = 0

    async def chunks(self) -> AsyncIterator[DecodedChunk]:
        worker, timeout = self._worker, self._pool.options.timeout_s
        try:
            data, self._data = memoryview(self._data), b""
            worker.stdin.write(HEADER.pack(JOB, len(data)))
            # In pieces: the pipe transport would otherwise buffer a copy of the whole file.
            for first in range(0, len(data), _WRITE_PIECE):
                worker.stdin.write(data[first : first + _WRITE_PIECE])
                async with asyncio.timeout(timeout):
                    await worker.stdin.drain()
            del data
            while True:
                async with asyncio.timeout(timeout):
                    kind, payload = await worker.read()
                if kind == PCM:
                    chunk = np.frombuffer(payload, dtype=np.float32)
                    self.samples += len(chunk)
                    yield chunk
                elif kind == RESTART:
                    self.samples = 0
                    yield RESTART_DECODE
                elif kind == DONE:
                    self.info = DecodeInfo(**json.loads(payload))
                    return
                elif kind == FAILED:
                    failure = json.loads(payload)
                    raise DecodeFailedError(failure["kind"], failure["message"])
                else:
                    raise DecodeFailedError("crashed", f"the decoder sent an unknown {kind!r}")
        except TimeoutError:
            raise DecodeFailedError(
                "timeout", f"the decoder made no progress for {timeout:g} s on this file"
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
            raise DecodeFailedError("crashed", await self._crash_reason()) from None

    async def _crash_reason(self) -> str:
        try:
            code = await asyncio.wait_for(self._worker.process.wait(), 5.0)
        except TimeoutError:
            return "the decoder stopped answering on this file"
        if code < 0:
            return f"the decoder crashed ({signal.Signals(-code).name}) on this file"
        return f"the decoder exited with status {code} on this file"


class DecoderPool:
    """`size` decode worker processes; `decode` leases one per file.

    Args:
        size: Number of worker processes: at most this many files are decoded at once.
        options: How the workers are started and supervised.
        metrics: Where to count restarts (optional).
    """

    def __init__(self, size: int, options: WorkerOptions, metrics: Metrics | None = None) -> None:
        if size < 1:
            raise ValueError(f"a decoder pool needs at least one worker, got {size}")
        self.size = size
        self.options = options
        self._metrics = metrics
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._closing = False
        self._spawning: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        started = time.monotonic()
        await asyncio.gather(*(self._add_worker() for _ in range(self.size)))
        logger.info(
            "%d decode worker processes ready in %.1f s", self.size, time.monotonic() - started
        )

    async def close(self) -> None:
        self._closing = True
        for task in self._spawning:
            task.cancel()
        for worker in list(self._all):
            with contextlib.suppress(Exception):
                worker.stdin.close()  # the worker exits at end of input
        for worker in list(self._all):
            try:
                await asyncio.wait_for(worker.process.wait(), 2.0)
            except TimeoutError:
                worker.kill()
                await worker.process.wait()
        self._all.clear()

    @property
    def idle_workers(self) -> int:
        return self._idle.qsize()

    async def _add_worker(self) -> None:
        options = self.options
        command = [
            sys.executable,
            "-m",
            "app.service.decode_worker",
            "--sample-rate",
            str(options.sample_rate),
            "--max-seconds",
            str(options.max_seconds),
            "--memory-mb",
            str(options.memory_mb),
        ]
        if options.fault_injection:
            command.append("--fault-injection")
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        worker = _Worker(process)
        self._all.add(worker)
        try:
            async with asyncio.timeout(60.0):
                kind, _ = await worker.read()
        except (TimeoutError, asyncio.IncompleteReadError):
            kind = b""
        if kind != HELLO:
            worker.kill()
            self._all.discard(worker)
            raise RuntimeError("a decode worker process did not start (see its stderr above)")
        self._idle.put_nowait(worker)

    def _replace(self, worker: _Worker, reason: str) -> None:
        worker.kill()
        self._all.discard(worker)
        if self._metrics:
            self._metrics.decoder_restarts.labels(reason=reason).inc()
        if self._closing:
            return
        logger.warning("replacing a decode worker (%s)", reason)
        task = asyncio.get_running_loop().create_task(self._respawn(worker))
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    async def _respawn(self, dead: _Worker) -> None:
        await dead.process.wait()  # reap it: no zombie is left behind
        while not self._closing:
            try:
                await self._add_worker()
                return
            except Exception:
                logger.exception("could not start a replacement decode worker; retrying in 1 s")
                await asyncio.sleep(1.0)

    @contextlib.asynccontextmanager
    async def decode(self, data: bytes, *, wait_s: float) -> AsyncIterator[DecodeJob]:
        """Lease a worker for one file: `async with pool.decode(data, wait_s=...) as job:`.

        Raises:
            TimeoutError: no worker was free within `wait_s`.
        """
        async with asyncio.timeout(wait_s):
            worker = await self._idle.get()
            while worker.process.returncode is not None:  # died while idle: take the next
                self._replace(worker, "exited")
                worker = await self._idle.get()
        job = DecodeJob(self, worker, data)
        reason = "abandoned"
        try:
            yield job
            if job.info is not None:
                reason = ""
        except DecodeFailedError as error:
            # The worker survives its own refusals (it said why); a crash, a hang or running
            # out of memory leave it dead or suspect.
            reason = "" if error.kind in CLEAN_REFUSALS else error.kind
            raise
        finally:
            if not reason and worker.process.returncode is None:
                self._idle.put_nowait(worker)
            else:
                self._replace(worker, reason or "exited")
