"""Run the real service (same app, same uvicorn runner as `tagger serve`) with test hooks.

    python -m tests.hardening.launch --host 127.0.0.1 --port 0 \\
        --resolve music.example=127.0.0.2 --fail-silent-batches --crash-decoder-on MARKER

Settings come from `TAGGER_*` variables as for `tagger serve`. The hooks are the ones
`create_app` offers to tests, plus one for the decoder:

- `--resolve NAME=ADDRESS[,ADDRESS]`: the URL fetcher resolves NAME to these addresses; other
  names go to the system resolver, or all to one address with `--resolve-others ADDRESS`. Lets
  a test point a harmless-looking name at a private address without touching DNS, and keeps
  fuzzed URLs from reaching out to the internet.
- `--fail-silent-batches`: the model call raises for any batch holding a window of exact
  digital silence (nothing a client sends makes the real model raise).
- `--crash-decoder-on MARKER`: decoding raises RuntimeError for any upload containing MARKER,
  standing in for a decoder library that trips over a file.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from torch import Tensor

import app.service.tagging as service_module
from app.pipeline.defaults import InferFn
from app.service.app import create_app
from app.service.fetch import IPAddress, Resolver, system_resolver
from app.service.logs import configure_logging
from app.service.server import run_server
from app.service.settings import Settings
from model.audio.decode import decode_audio


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


def crash_decoder_on(marker: bytes) -> None:
    def decode(source: Any, **kwargs: Any) -> Any:
        if isinstance(source, bytes) and marker in source:
            raise RuntimeError("injected decoder crash")
        return decode_audio(source, **kwargs)

    # The service calls decode_audio through its module's namespace.
    service_module.decode_audio = decode  # type: ignore[attr-defined]


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
    parser.add_argument("--crash-decoder-on", metavar="MARKER")
    args = parser.parse_args(argv)

    settings = Settings(host=args.host, port=args.port)
    if args.crash_decoder_on:
        crash_decoder_on(args.crash_decoder_on.encode())
    configure_logging(settings.log_level)
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
    app = create_app(
        settings,
        wrap_infer=fail_silent_batches if args.fail_silent_batches else None,
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
