"""A decode worker process: reads encoded files on stdin, writes mono PCM on stdout.

FFmpeg (inside PyAV) is a large C library with a long CVE history, and a hostile file can make
it crash or spin. So the service never decodes in its own process: `app.service.decoders` keeps
a pool of these workers, `python -m app.service.decode_worker`, and kills and replaces one that
crashes, hangs or runs out of memory; only the request it was decoding fails.

The worker imports PyAV, soundfile and NumPy, not torch (`model.audio` needs none), and caps its
own address space with `RLIMIT_AS` before it reads any input.

Protocol, one job at a time. Every message is a 1-byte kind, a 8-byte little-endian length and
the payload:

    service -> worker   JOB   the encoded file
    worker -> service   HELLO (once, at start)  |  PCM float32 samples  |  RESTART (drop the
                        PCM so far: the fallback decoder starts over)  |  DONE json  |
                        FAILED json {"kind": ..., "message": ...}

Fault injection (tests only, `--fault-injection`): a file containing `FAULT_SEGFAULT` makes the
worker kill itself with SIGSEGV, `FAULT_HANG` makes it sleep for ever, `FAULT_MEMORY` makes it
allocate until its memory limit stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import struct
import sys
import time
from typing import BinaryIO

import numpy as np

from model.audio.decode import (
    AudioDecodeError,
    AudioStream,
    AudioTooLongError,
    EmptyAudioError,
)

HEADER = struct.Struct("<cQ")
JOB, HELLO, PCM, RESTART, DONE, FAILED = b"J", b"H", b"P", b"R", b"D", b"F"

FAULT_SEGFAULT = b"TAGGER-FAULT:segfault"
FAULT_HANG = b"TAGGER-FAULT:hang"
FAULT_MEMORY = b"TAGGER-FAULT:memory"


def write_message(out: BinaryIO, kind: bytes, payload: bytes = b"") -> None:
    out.write(HEADER.pack(kind, len(payload)))
    if payload:
        out.write(payload)
    out.flush()


def read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    """`size` bytes, or None at end of input (the service closed the pipe: exit)."""
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _inject_fault(data: bytes) -> None:
    if FAULT_SEGFAULT in data:
        os.kill(os.getpid(), signal.SIGSEGV)
    if FAULT_HANG in data:
        while True:
            time.sleep(3600)
    if FAULT_MEMORY in data:
        hoard = []
        while True:  # address space, as a decoder's runaway buffers take it
            hoard.append(np.empty(64 * 1024 * 1024, dtype=np.uint8))


def _failure(kind: str, message: str) -> bytes:
    return json.dumps({"kind": kind, "message": message}).encode()


def decode_job(
    data: bytes, out: BinaryIO, *, sample_rate: int, max_seconds: float, faults: bool = False
) -> None:
    """Decode one file and write its PCM, then DONE or FAILED."""
    stream = AudioStream(data, sample_rate=sample_rate, max_seconds=max_seconds)
    try:
        if faults:
            _inject_fault(data)
        for chunk in stream:
            if isinstance(chunk, np.ndarray):
                write_message(out, PCM, chunk.tobytes())
            else:
                write_message(out, RESTART)
    except AudioTooLongError as error:
        write_message(out, FAILED, _failure("too-long", str(error)))
    except EmptyAudioError as error:
        write_message(out, FAILED, _failure("empty", str(error)))
    except AudioDecodeError as error:
        write_message(out, FAILED, _failure("undecodable", str(error)))
    except MemoryError:
        write_message(out, FAILED, _failure("memory", "decoding needed more memory than allowed"))
    except Exception as error:  # a decoder tripping over hostile input is still the input's fault
        print(f"decode worker: {type(error).__name__}: {error}", file=sys.stderr)
        message = "could not decode the audio: the file is corrupted or truncated"
        write_message(out, FAILED, _failure("undecodable", message))
    else:
        info = {"decoder": stream.decoder, "container": stream.container}
        write_message(out, DONE, json.dumps(info).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-rate", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    parser.add_argument("--memory-mb", type=int, required=True, help="address space limit")
    parser.add_argument("--fault-injection", action="store_true", help="tests only")
    args = parser.parse_args(argv)
    # The protocol owns stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Ctrl-C reaches the whole process group: the service shuts its workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit = args.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    source = sys.stdin.buffer
    write_message(out, HELLO)
    while True:
        header = read_exactly(source, HEADER.size)
        if header is None:
            return 0
        kind, size = HEADER.unpack(header)
        data = read_exactly(source, size)
        if data is None or kind != JOB:
            return 0
        decode_job(
            data,
            out,
            sample_rate=args.sample_rate,
            max_seconds=args.max_seconds,
            faults=args.fault_injection,
        )
        del data


if __name__ == "__main__":
    sys.exit(main())
