"""Run the real service (same app, same uvicorn runner as `tagger serve`) with test hooks.

    python -m tests.hardening.launch --host 127.0.0.1 --port 0 \\
        --resolve music.example=127.0.0.2 --fail-silent-batches

Settings come from `TAGGER_*` variables as for `tagger serve` (decoder faults are a setting:
`TAGGER_DECODE_FAULT_INJECTION`). The hooks are the ones `create_app` offers to tests:

- `--resolve NAME=ADDRESS[,ADDRESS]`: the URL fetcher resolves NAME to these addresses; other
  names go to the system resolver, or all to one address with `--resolve-others ADDRESS`. Lets
  a test point a harmless-looking name at a private address without touching DNS, and keeps
  fuzzed URLs from reaching out to the internet.
- `--fail-silent-batches`: the model call raises for any batch holding a window of exact
  digital silence (nothing a client sends makes the real model raise).
- `--hang-silent-batches`: the model call never returns for such a batch, as a hung kernel or
  GPU would (it sleeps with the GIL released, as a native call does).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import time
import warnings
from collections.abc import Sequence

from torch import Tensor

from app.pipeline.defaults import InferFn
from app.service.app import create_app
from app.service.fetch import IPAddress, Resolver, system_resolver
from app.service.logs import configure_logging
from app.service.server import run_server
from app.service.settings import Settings


def mapped_resolver(
    names: dict[str, list[IPAddress]], default: list[IPAddress] | None = None
) -> Resolver:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if host.lower() in names:
            return names[host.lower()]
        if default is not None:
            return default
        return await system_resolver(host, port)

    return resolve


def fail_silent_batches(infer: InferFn) -> InferFn:
    def call(windows: Tensor) -> Tensor:
        if bool((windows.abs().amax(dim=1) == 0).any()):
            raise RuntimeError("injected model fault: a window of silence")
        return infer(windows)

    return call


def hang_silent_batches(infer: InferFn) -> InferFn:
    def call(windows: Tensor) -> Tensor:
        while bool((windows.abs().amax(dim=1) == 0).any()):
            time.sleep(1.0)  # injected model fault: the call never returns
        return infer(windows)

    return call


def _parse_resolve(values: Sequence[str]) -> dict[str, list[IPAddress]]:
    names: dict[str, list[IPAddress]] = {}
    for value in values:
        name, _, addresses = value.partition("=")
        names[name.lower()] = [ipaddress.ip_address(a) for a in addresses.split(",")]
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--resolve", action="append", default=[], metavar="NAME=ADDRESS")
    parser.add_argument(
        "--resolve-others", metavar="ADDRESS", help="every other name resolves to ADDRESS"
    )
    parser.add_argument("--fail-silent-batches", action="store_true")
    parser.add_argument("--hang-silent-batches", action="store_true")
    args = parser.parse_args(argv)

    settings = Settings(host=args.host, port=args.port)
    configure_logging(settings.log_level)
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
    app = create_app(
        settings,
        wrap_infer=fail_silent_batches
        if args.fail_silent_batches
        else hang_silent_batches
        if args.hang_silent_batches
        else None,
        resolver=(
            mapped_resolver(
                _parse_resolve(args.resolve),
                [ipaddress.ip_address(args.resolve_others)] if args.resolve_others else None,
            )
            if args.resolve or args.resolve_others
            else None
        ),
    )
    return run_server(app, settings)


if __name__ == "__main__":
    sys.exit(main())
