"""`tagger index` (build, remove, info) and `tagger similar`: the catalogue from the command line.

`tagger index build` tags and embeds files with the batch tagger `tagger tag` uses, into an
SQLite catalogue (`app.catalog`); `tagger similar` finds the catalogued tracks that sound most
like a file or like a track of the catalogue. docs/cli.md and docs/similarity.md have the
reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANNOT_START = 2


def add_parsers(commands: Any) -> None:
    """Register `index` and `similar` on the `tagger` parser's subcommands."""
    index = commands.add_parser("index", help="build and maintain a catalogue for `similar`")
    actions = index.add_subparsers(dest="index_command", required=True)
    build = actions.add_parser("build", help="tag, embed and add files and folders")
    build.add_argument("paths", nargs="+", metavar="PATH", help="audio files and folders")
    build.add_argument("--db", type=Path, required=True, help="the catalogue (SQLite file)")
    build.add_argument("-r", "--recursive", action="store_true", help="search subfolders too")
    build.add_argument(
        "--prune", action="store_true", help="also drop catalogued files that no longer exist"
    )
    _model_options(build)
    build.add_argument("--batch-windows", type=int, default=8, metavar="N")
    build.add_argument("--decode-workers", type=int, metavar="N")
    build.add_argument("--threads", type=int, metavar="N", help="torch threads")
    build.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    remove = actions.add_parser("remove", help="drop files (or everything below folders)")
    remove.add_argument("paths", nargs="+", metavar="PATH")
    remove.add_argument("--db", type=Path, required=True)
    info = actions.add_parser("info", help="what the catalogue holds")
    info.add_argument("--db", type=Path, required=True)

    similar = commands.add_parser("similar", help="catalogued tracks that sound like a query")
    similar.add_argument(
        "query", metavar="QUERY", help="an audio file, or the id of a catalogued track"
    )
    similar.add_argument("--db", type=Path, required=True, help="the catalogue (SQLite file)")
    similar.add_argument("-n", "--top", type=int, default=10, help="results (default: 10)")
    similar.add_argument(
        "--tag", action="append", default=[], help="results must have this tag (repeatable)"
    )
    similar.add_argument(
        "--min-score", type=float, help="score a --tag needs (default: the tag's threshold)"
    )
    similar.add_argument(
        "--taxonomy", action="append", default=[], metavar="CATEGORY",
        help="results share the query's best tag in this category: genre, mood, instrument, "
        "vocal, tempo/dynamics (repeatable)",
    )  # fmt: skip
    similar.add_argument("--format", choices=["table", "json"], default="table")
    _model_options(similar)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (TAGGER_CHECKPOINT)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (TAGGER_DEVICE)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument(
        "--tag-sets", nargs="+", type=Path, metavar="PATH",
        help="tag set files or folders whose taught tags are scored too (TAGGER_TAG_SETS)",
    )  # fmt: skip


def _say(message: str) -> None:
    print(f"tagger: {message}", file=sys.stderr)


class _Model:
    """The checkpoint prepared as `tagger tag` prepares it, with embeddings."""

    def __init__(self, args: argparse.Namespace, batch_windows: int, threads: int | None) -> None:
        import torch

        from app.pipeline.defaults import default_cli_threads, default_decode_workers
        from app.pipeline.settings import ModelSettings
        from app.pipeline.tag_sets import with_tag_sets
        from model.checkpoint import load_checkpoint
        from model.embedding import embedding_spec
        from model.runtime import Runtime, RuntimeOptions, resolve_device

        given = {
            "checkpoint": args.checkpoint,
            "device": args.device,
            "precision": args.precision,
            "tag_sets": tuple(getattr(args, "tag_sets", None) or ()) or None,
        }
        settings = ModelSettings(**{k: v for k, v in given.items() if v is not None})
        self.decode_workers = getattr(args, "decode_workers", None) or default_decode_workers()
        torch.set_num_threads(
            threads or settings.torch_threads or default_cli_threads(self.decode_workers)
        )
        self.device = resolve_device(settings.device)
        self.checkpoint = with_tag_sets(
            load_checkpoint(settings.checkpoint, device=self.device), settings.tag_sets
        )
        options = RuntimeOptions(
            precision=settings.precision,
            channels_last=settings.channels_last,
            compile="off",
            embeddings=True,
        )
        self.runtime = Runtime(self.checkpoint.model, self.device, options, max_batch=batch_windows)
        self.spec = embedding_spec(self.checkpoint.model, self.checkpoint.model_id)
        self.batch_windows = batch_windows

    def tagger(self) -> Any:
        from app.cli.batch_tagging import BatchTagger

        audio = self.checkpoint.model.audio
        return BatchTagger(
            self.runtime,
            window_samples=audio.window_samples,
            sample_rate=audio.sample_rate,
            batch_windows=self.batch_windows,
            decode_workers=self.decode_workers,
            n_tags=len(self.checkpoint.metadata.tags),
        )


def _keeping_threads(run: Any) -> Any:
    """Restore torch's thread count afterwards, for callers in the same process (tests)."""

    def wrapped(args: argparse.Namespace) -> int:
        import torch

        previous = torch.get_num_threads()
        try:
            code: int = run(args)
            return code
        finally:
            torch.set_num_threads(previous)

    return wrapped


@_keeping_threads
def index(args: argparse.Namespace) -> int:
    from app.catalog.store import CatalogError, CatalogStore

    try:
        store = CatalogStore(args.db, readonly=args.index_command == "info")
    except CatalogError as error:
        _say(str(error))
        return EXIT_CANNOT_START
    try:
        if args.index_command == "remove":
            return _remove(store, args)
        if args.index_command == "info":
            return _info(store)
        return _build(store, args)
    except CatalogError as error:
        _say(str(error))
        return EXIT_CANNOT_START
    finally:
        store.close()


def _remove(store: Any, args: argparse.Namespace) -> int:
    from app.catalog.build import remove_paths
    from app.catalog.index import CatalogIndex

    removed = remove_paths(store, args.paths)
    CatalogIndex(store, writer=True).save()
    _say(f"removed {removed} files; {len(store)} tracks in {args.db}")
    return EXIT_OK


def _info(store: Any) -> int:
    from app.catalog.index import CatalogIndex

    spec = store.spec
    index = CatalogIndex(store)
    document = {
        "tracks": len(store),
        "embedding": None if spec is None else spec.to_dict(),
        "index": index.kind,
    }
    print(json.dumps(document, indent=2))
    return EXIT_OK


def _build(store: Any, args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from app.catalog.build import add_files, plan, prune
    from app.catalog.index import CatalogIndex
    from app.cli.batch_tagging import collect_files
    from model.checkpoint import CheckpointError
    from model.tagset import TagSetError

    if args.batch_windows < 1:
        _say("--batch-windows must be at least 1")
        return EXIT_CANNOT_START
    try:
        model = _Model(args, args.batch_windows, args.threads)
    except (ValidationError, CheckpointError, TagSetError, RuntimeError) as error:
        _say(f"cannot load the model: {error}")
        return EXIT_CANNOT_START
    metadata = model.checkpoint.metadata
    store.bind_model(model.spec, metadata.tags, metadata.thresholds)  # refuses another model
    listing = collect_files(args.paths, recursive=args.recursive)
    for path, why in listing.unusable:
        _say(f"failed: {path}: {why}")
    removed = prune(store) if args.prune else 0
    todo, unchanged = plan(store, listing.files)
    _say(
        f"{model.spec.model_id} ({model.spec.kind}, {model.spec.dim} dimensions) on "
        f"{model.device}; {len(todo)} files to add, {unchanged} unchanged"
        + (f", {removed} missing files dropped" if removed else "")
    )
    catalog_index = CatalogIndex(store, writer=True)
    bar = tqdm(total=len(todo), unit="file", file=sys.stderr, disable=args.progress is False)
    started = time.monotonic()

    def step(result: Any) -> None:
        if not result.ok:
            _say(f"failed: {result.path}: {result.error}")
        bar.update(1)

    try:
        report = add_files(store, catalog_index, model.tagger(), todo, on_result=step)
    except KeyboardInterrupt:
        report = None
    finally:
        bar.close()
    if report is None:
        _say(f"interrupted: finished files are in {args.db}; run again to continue")
        return 130
    wall = time.monotonic() - started
    _say(
        f"added {report.added} files ({report.audio_seconds / 3600:.3f} h of audio) in "
        f"{wall:.1f} s, {len(report.failed) + len(listing.unusable)} failed; "
        f"{len(store)} tracks in {args.db} (index: {catalog_index.kind})"
    )
    return EXIT_FAILED if report.failed or listing.unusable else EXIT_OK


@_keeping_threads
def similar(args: argparse.Namespace) -> int:
    from app.catalog.build import key
    from app.catalog.search import Catalog, Filters
    from app.catalog.store import CatalogError, CatalogStore

    if args.top < 1:
        _say("--top must be at least 1")
        return EXIT_CANNOT_START
    filters = Filters(tuple(args.tag), args.min_score, tuple(args.taxonomy))
    try:
        store = CatalogStore(args.db, readonly=True)
    except CatalogError as error:
        _say(str(error))
        return EXIT_CANNOT_START
    try:
        catalog = Catalog(store)
        query: dict[str, Any]
        if not os.path.exists(args.query) and args.query.isdigit():
            track, matches = catalog.similar_to_track(
                int(args.query), top=args.top, filters=filters
            )
            query = {"track_id": track.id, "file": track.path}
        elif (known := store.track_by_path(key(args.query))) is not None:
            track, matches = catalog.similar_to_track(known.id, top=args.top, filters=filters)
            query = {"track_id": track.id, "file": track.path}
        else:
            found = _embed(args, catalog)
            if isinstance(found, int):
                return found
            scores, embedding = found
            matches = catalog.similar(embedding, top=args.top, filters=filters, query_scores=scores)
            query = {"file": args.query}
    except CatalogError as error:
        _say(str(error))
        return EXIT_CANNOT_START
    finally:
        store.close()
    rows: list[dict[str, Any]] = [
        {
            "track_id": m.track.id,
            "file": m.track.path,
            "similarity": round(m.similarity, 4),
            "duration_seconds": round(m.track.duration, 3),
            "top_tags": [{"tag": t, "score": round(s, 4)} for t, s in m.top_tags],
        }
        for m in matches
    ]
    if args.format == "json":
        print(json.dumps({"query": query, "results": rows}, indent=2))
        return EXIT_OK
    print(f"{'id':>6}  {'similarity':>10}  file  (top tags)")
    for row in rows:
        tags = ", ".join(f"{t['tag']} {t['score']:.2f}" for t in row["top_tags"][:3])
        print(f"{row['track_id']:>6}  {row['similarity']:>10.4f}  {_shown(row['file'])}  ({tags})")
    return EXIT_OK


def _embed(args: argparse.Namespace, catalog: Any) -> tuple[Any, Any] | int:
    """(scores, embedding) of a query file not in the catalogue, or an exit code."""
    from model.checkpoint import CheckpointError
    from model.tagset import TagSetError

    try:
        model = _Model(args, 8, None)
    except (ValidationError, CheckpointError, TagSetError, RuntimeError) as error:
        _say(f"cannot load the model: {error}")
        return EXIT_CANNOT_START
    catalog.check_model(model.spec)  # a catalogue of another model: ModelMismatchError
    result = next(iter(model.tagger().tag([args.query])))
    if not result.ok or result.embedding is None or result.track_scores is None:
        _say(f"cannot embed {args.query}: {result.error}")
        return EXIT_FAILED
    return result.track_scores.numpy(), result.embedding.numpy()


def _shown(path: str) -> str:
    """A catalogued (absolute) path as people read it: relative when below the current folder."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
