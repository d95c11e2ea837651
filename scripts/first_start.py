"""Time the service's first start with an empty compile cache: to ready, to the first tagged
request (eager), and to the switch to compiled graphs. Prints the figures.

    .venv/bin/python scripts/first_start.py                 # the bundled default model
    .venv/bin/python scripts/first_start.py --checkpoint path/to/model.safetensors

The server runs as `make serve` runs it (`TAGGER_COMPILE=auto`), with `TORCHINDUCTOR_CACHE_DIR`
pointing at a fresh temporary folder, so nothing compiled earlier is reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app.audio import encode  # noqa: E402
from tests.app.servers import ServiceProcess  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="default: the bundled model")
    parser.add_argument("--compile-timeout", type=float, default=1200.0)
    args = parser.parse_args()
    settings: dict[str, object] = {"compile": "auto"}
    if args.checkpoint:
        settings["checkpoint"] = args.checkpoint
    with tempfile.TemporaryDirectory(prefix="inductor-cache-") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        started = time.monotonic()
        server = ServiceProcess(settings)
        try:
            server.wait_ready(timeout=600)
            ready = time.monotonic() - started
            clip = encode("mp3", 30.0)
            files = {"file": ("clip.mp3", clip, "audio/mpeg")}
            response = httpx.post(f"{server.url}/tag", files=files, timeout=120)
            response.raise_for_status()
            first_tag = time.monotonic() - started
            execution = httpx.get(f"{server.url}/model").json()["runtime"]["execution"]
            deadline = time.monotonic() + args.compile_timeout
            runtime = {}
            while time.monotonic() < deadline:
                runtime = httpx.get(f"{server.url}/model").json()["runtime"]
                if runtime["execution"] != "compiling":
                    break
                time.sleep(1)
            switched = time.monotonic() - started
        finally:
            server.stop()
    cpu = platform.processor() or platform.machine()
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu})")
    print(f"ready (GET /readyz 200):              {ready:6.1f} s")
    print(f"first 30 s mp3 tagged (POST /tag 200): {first_tag:6.1f} s, execution {execution}")
    compile_seconds = runtime.get("compile_seconds")
    took = f"{compile_seconds:.1f} s" if isinstance(compile_seconds, float) else "-"
    print(
        f"execution {runtime.get('execution')}: {switched:6.1f} s "
        f"(background compile {took}, error {runtime.get('compile_error')})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
