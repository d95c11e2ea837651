"""`tagger tag --engine ray SOURCE --output DEST`: the same tagging as `tagger tag`, as a Ray
Data job (`app.scale`), on a local Ray started here or on the cluster at `--address`.

SOURCE and DEST are local paths or object-store URIs (`s3://bucket/music`); DEST is a folder
of Parquet (default) or JSON Lines files. A rerun skips every file DEST holds a record of
success for (as `--resume` does for the local engine; failed files are tried again). Exit codes
are `tagger tag`'s. Ray is an optional extra: without it, this says how to install it.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Any

from app.cli.options import TagRunOptions
from app.pipeline.settings import ModelSettings
from app.pipeline.vocabulary import VocabularyError

EXIT_OK, EXIT_FAILED_FILES, EXIT_CANNOT_START, EXIT_INTERRUPTED = 0, 1, 2, 130
RAY_FORMATS = ("parquet", "jsonl")


def add_engine_arguments(tag: argparse.ArgumentParser) -> None:
    """The `--engine ray` options of `tagger tag` (docs/cli.md, docs/scale-out.md)."""
    group = tag.add_argument_group("Ray Data engine (needs pip install '.[scale]')")
    group.add_argument(
        "--engine", choices=["local", "ray"], default="local",
        help="local: this process (default); ray: a Ray Data job, SOURCE and --output DEST "
        "may be object-store URIs (s3://...), DEST is a folder of Parquet or JSON Lines files",
    )  # fmt: skip
    group.add_argument(
        "--address", metavar="ADDRESS",
        help="Ray cluster to run on (ray://host:10001, or auto for the one `ray start` runs "
        "here); default: start a local Ray on this machine",
    )  # fmt: skip
    group.add_argument(
        "--actors", type=int, metavar="N",
        help="model actors (default: one per GPU of the cluster, else one per node)",
    )  # fmt: skip


def _say(message: str) -> None:
    print(f"tagger: {message}", file=sys.stderr)


def _check(args: argparse.Namespace) -> str | None:
    if args.engine != "ray":
        return (
            "--format parquet needs --engine ray (the local engine writes table, json, jsonl, csv)"
        )
    if args.format not in (*RAY_FORMATS, "table"):  # table: the default, meaning "not given"
        return f"--engine ray writes {' or '.join(RAY_FORMATS)}, not {args.format}"
    if args.output is None:
        return "--engine ray needs --output DEST: a folder or object-store URI for the results"
    if len(args.paths) != 1:
        return "--engine ray takes one SOURCE: a file, a folder or an object-store URI"
    if args.actors is not None and args.actors < 1:
        return f"--actors must be at least 1, got {args.actors}"
    return None


def run_ray(args: argparse.Namespace, settings: ModelSettings) -> int:
    """`tagger tag --engine ray` with parsed arguments; returns the exit code."""
    problem = _check(args)
    if problem:
        _say(problem)
        return EXIT_CANNOT_START
    try:
        import ray

        from app.scale.job import JobOptions, run_job
        from app.scale.storage import StorageError, locate
        from model.checkpoint import CheckpointError, read_metadata
    except ImportError as error:
        _say(f"--engine ray needs the scale extra: pip install '.[scale]' ({error})")
        return EXIT_CANNOT_START
    if args.format == "table":
        args.format = "parquet"
    options = TagRunOptions.from_args(args, settings)
    try:
        source, dest = locate(options.paths[0]), locate(str(args.output))
        read_metadata(options.checkpoint)  # before Ray starts: a file that is no checkpoint
    except (StorageError, CheckpointError) as error:
        _say(str(error))
        return EXIT_CANNOT_START
    cluster: Any = ray  # ray's cluster calls are untyped
    _start_ray(cluster, args.address)
    try:
        gpus = cluster.cluster_resources().get("GPU", 0) if options.device != "cpu" else 0
        nodes = sum(1 for node in cluster.nodes() if node.get("Alive"))
        if options.device.startswith("cuda") and not gpus:
            _say(f"--device {options.device}, but the Ray cluster has no GPU; use --device auto")
            return EXIT_CANNOT_START
        job = JobOptions(
            source=source,
            dest=dest,
            format=args.format,
            recursive=options.recursive,
            checkpoint=options.checkpoint,
            device=options.device,
            precision=options.precision,
            channels_last=options.channels_last,
            compile=options.compile,
            batch_windows=options.batch_windows,
            top_k=options.top_k,
            threshold=options.threshold,
            segments=options.segments,
            max_seconds=options.max_seconds,
            actors=args.actors or int(gpus) or nodes,
            gpus_per_actor=1.0 if gpus else 0.0,
            threads=options.threads,
            decode_workers=args.decode_workers,
            progress=options.progress is not False,
            embedding=options.embedding,
            taxonomy=options.taxonomy,
            synonyms=options.synonyms,
        )
        report = run_job(job, say=_say)
    except (StorageError, CheckpointError, VocabularyError, OSError) as error:
        _say(str(error))
        return EXIT_CANNOT_START
    except KeyboardInterrupt:
        _say("interrupted: files already written stay in DEST; run again to continue")
        return EXIT_INTERRUPTED
    except Exception as error:  # Ray's own failures (a lost node, an actor that cannot start)
        _say(f"the Ray job failed: {type(error).__name__}: {str(error)[:2000]}")
        _say("files already written stay in DEST; run again to continue")
        return EXIT_CANNOT_START
    finally:
        cluster.shutdown()
    for file, why in report.failed:
        _say(f"failed: {file}: {why}")
    counts = f"files: {report.tagged} tagged, {len(report.failed)} failed, {report.skipped} skipped"
    if report.skipped:
        counts += " (already in DEST)"
    if report.ignored:
        counts += f"; {report.ignored} non-audio or hidden files ignored"
    _say(counts)
    _say(
        f"{report.audio_seconds / 3600:.3f} h of audio in {report.wall_seconds:.1f} s wall time "
        f"= {report.audio_hours_per_hour:.1f} audio hours per hour"
    )
    if report.stats:
        stages = ", ".join(f"{name} {nodes}" for name, nodes in stage_nodes(report.stats))
        _say(f"Ray nodes per stage: {stages}")
    return EXIT_FAILED_FILES if report.failed else EXIT_OK


def _start_ray(ray: Any, address: str | None) -> None:
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # "local": a new Ray on this machine, never a cluster some earlier `ray start` left.
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)


def stage_nodes(stats: str) -> list[tuple[str, int]]:
    """(stage, nodes its tasks ran on) from a finished dataset's stats text (`Dataset.stats`)."""
    found = re.findall(r"^Operator \d+ (\S+?):.*?; (\d+) nodes used", stats, re.M | re.S)
    return [(name, int(nodes)) for name, nodes in found]
