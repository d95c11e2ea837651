"""`tagger compile`: build the compiled graphs the service will run, ahead of time.

The service loads a cached artifact within a second of starting and serves compiled graphs at
once; without one it serves eagerly while a child process builds it (about a minute on two
cores). This command builds it first, for the same settings (`TAGGER_*` variables and the
options below), e.g. in a Docker image build or before a rolling restart. Exit status 0: the
artifact is in the cache (built now or found valid there); 1: building it failed; 2: bad
settings or checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

COMPILE_EPILOG = """\
The artifact is keyed by the model's digest, the model code, torch's version, the device (CPU
instruction sets or GPU compute capability), the precision and the batch shapes: a service
started with other settings or on another machine builds its own. docs/performance.md says how
long it takes and what it gains."""


def add_parser(commands: Any) -> None:
    compile_ = commands.add_parser(
        "compile",
        help="build the service's compiled graphs into the compile cache ahead of time",
        description=__doc__,
        epilog=COMPILE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compile_.add_argument("--checkpoint", type=Path, help="checkpoint file (TAGGER_CHECKPOINT)")
    compile_.add_argument("--device", help="auto, cpu, cuda or cuda:N (TAGGER_DEVICE)")
    compile_.add_argument(
        "--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"], help="TAGGER_PRECISION"
    )
    compile_.add_argument("--max-batch-windows", type=int, help="TAGGER_MAX_BATCH_WINDOWS")
    compile_.add_argument("--cache-dir", type=Path, help="TAGGER_COMPILE_CACHE_DIR")
    compile_.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from app.service.settings import Settings

    overrides: dict[str, Any] = {"compile": "on"}
    for name, field in [
        ("checkpoint", "checkpoint"),
        ("device", "device"),
        ("precision", "precision"),
        ("max_batch_windows", "max_batch_windows"),
        ("cache_dir", "compile_cache_dir"),
    ]:
        if getattr(args, name) is not None:
            overrides[field] = getattr(args, name)
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        print(f"tagger compile: invalid settings:\n{error}", file=sys.stderr)
        return 2
    import torch

    from app.pipeline.defaults import resolve_threads
    from app.pipeline.int8 import plan_int8
    from app.service.execution import plan_compile
    from app.service.tagging import runtime_options
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.compiled import CompileCache
    from model.runtime import Runtime, batch_shapes, resolve_device

    try:
        device = resolve_device(settings.device)
        checkpoint = load_checkpoint(settings.checkpoint, device=device)
    except (CheckpointError, RuntimeError, OSError) as error:
        print(f"tagger compile: {error}", file=sys.stderr)
        return 2
    torch.set_num_threads(resolve_threads(settings.torch_threads))
    options = runtime_options(settings)
    int8 = plan_int8(checkpoint, options, device)
    cache = CompileCache(settings.compile_cache_dir)
    # The service's runtime's shapes: the same rule, without building a runtime.
    largest = Runtime.chunk_cap(options, device, settings.max_batch_windows)
    plan = plan_compile(
        checkpoint.model,
        device,
        options,
        shapes=batch_shapes(largest),
        checkpoint=checkpoint.path,
        cache=cache,
        int8=int8,
    )
    found = cache.problem(plan.key)
    origin = "cache"
    if found is not None:
        if found != "missing":
            print(f"tagger compile: rebuilding {plan.key.digest}: {found}", file=sys.stderr)
            cache.discard(plan.key)
        runtime = Runtime(
            checkpoint.model,
            device,
            plan.options,
            max_batch=settings.max_batch_windows,
            int8_recipe=int8.recipe if plan.int8_recipe_used else None,
            cache=cache,
        )
        try:
            runtime.build()
        except Exception as error:
            print(
                f"tagger compile: building failed: {type(error).__name__}: {error}", file=sys.stderr
            )
            return 1
        origin = "built"
    entry = cache.entry(plan.key)
    manifest = json.loads((entry / "manifest.json").read_text())
    result = {
        "artifact": str(entry),
        "origin": origin,
        "key": plan.key.to_dict(),
        "build_seconds": manifest.get("build_seconds"),
        "parity_max_abs_diff": manifest.get("parity_max_abs_diff"),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        verb = "built" if origin == "built" else "already in the cache"
        print(f"{plan.key.describe()}: {verb}\n  {entry}")
    return 0
