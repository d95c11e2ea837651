"""The Ray Data stages of `tagger tag --engine ray`, as plain callables Ray runs on its workers.

    read_binary_files (Ray) ──► decode_file (CPU tasks) ──► TrackScorer (actor pool) ──► sink
      {bytes, path}              {path, windows, ...}         one record per file

- `decode_file`: one file's bytes to its windows, with the decoder and windowing `tagger tag`
  and the service use (`app.pipeline.audio_input`, `model.inference.split_windows`). A file
  that fails becomes a row with its `error` and no windows, never an exception: one broken
  file must not fail the Ray task that read it together with others.
- `TrackScorer`: an actor that loads the checkpoint once and scores the windows of a batch of
  files with a `model.runtime.Runtime` (the fast path of the service and the CLI), then
  aggregates per track and describes each file with `app.pipeline.records.Describer`, so its
  records are `tagger tag`'s, field for field, plus `scores` (every covered tag's track
  score, keyed by tag id).
- The sinks: Parquet (`parquet_table`, typed by `PARQUET_SCHEMA`) or JSON Lines
  (`JsonLinesDatasink`, one `tagger tag --format jsonl` line per file).

Embeddings come from the same forward pass as the scores (`Runtime(embeddings=True)`, as
`tagger tag` runs it); `--embedding` decides whether records carry them.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from ray.data.block import BlockAccessor
from ray.data.datasource import BlockBasedFileDatasink

from app.pipeline.audio_input import decode_content, failure_message
from app.pipeline.describe import track_scores, window_times
from app.pipeline.records import DIGITS, Describer, FileResult
from app.pipeline.vocabulary import Vocabulary
from model.checkpoint import load_checkpoint
from model.embedding import split_rows, track_embedding
from model.inference import split_windows
from model.runtime import CompileMode, Precision, Runtime, RuntimeOptions, resolve_device
from model.tags import Tag

_SEGMENT = pa.struct(
    [
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("scores", pa.map_(pa.string(), pa.float64())),
        ("embedding", pa.list_(pa.float64())),
    ]
)
_EMBEDDING = pa.struct(
    [("kind", pa.string()), ("dim", pa.int64()), ("vector", pa.list_(pa.float64()))]
)
_TAG = pa.struct(
    [
        ("tag", pa.string()),
        ("score", pa.float64()),
        ("category", pa.string()),
        ("synonym_group", pa.string()),
        ("taxonomy", pa.string()),  # null for a single-vocabulary model
        ("threshold", pa.float64()),
        ("passes_threshold", pa.bool_()),
    ]
)
PARQUET_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("model_id", pa.string()),
        ("error", pa.string()),
        ("duration_seconds", pa.float64()),
        ("windows", pa.int64()),
        ("window_seconds", pa.float64()),
        ("format", pa.string()),
        ("tags", pa.list_(_TAG)),
        ("scores", pa.map_(pa.string(), pa.float64())),
        ("segments", pa.list_(_SEGMENT)),
        ("embedding", _EMBEDDING),  # with --embedding, as in tagger tag's records
    ]
)
"""One row per file; `error` is null for a tagged file, the other fields null for a failed one."""


@dataclass(frozen=True)
class DecodeConfig:
    """What `decode_file` needs: the model's audio front end and the duration limit."""

    sample_rate: int
    window_samples: int
    max_seconds: float | None


def decode_file(row: dict[str, Any], config: DecodeConfig, scheme: str) -> dict[str, Any]:
    """{bytes, path} -> {file, windows (float32 bytes), n_windows, n_samples, container, error}.

    `scheme` ("s3://", or "" on a local disk) turns Ray's filesystem path into the record's name.
    """
    file = scheme + str(row["path"])
    try:
        samples, container = decode_content(
            bytes(row["bytes"]), config.sample_rate, config.max_seconds
        )
    except Exception as error:  # the file's fault, never the job's (see failure_message)
        return {"file": file, "windows": b"", "n_windows": 0, "n_samples": 0, "container": "",
                "error": failure_message(error, file)}  # fmt: skip
    windows = split_windows(samples, config.window_samples).numpy()
    return {
        "file": file,
        "windows": np.ascontiguousarray(windows, dtype=np.float32).tobytes(),
        "n_windows": int(windows.shape[0]),
        "n_samples": int(samples.shape[0]),
        "container": container,
        "error": None,
    }


@dataclass(frozen=True)
class ScorerConfig:
    """How each `TrackScorer` actor prepares the model and describes its files.

    Attributes:
        checkpoint: A one-item list holding the object ref of the checkpoint file's bytes (a
            list, so Ray hands the ref itself to the actor, which fetches it once).
        model_id: The driver's reading of the checkpoint; an actor that loads another fails.
        device: auto, cpu, cuda or cuda:N, resolved on the actor's node.
        precision, channels_last, compile: as `tagger tag`'s options (`RuntimeOptions`).
        batch_windows: Largest model call (the Runtime's chunk cap).
        threads: Torch threads per actor (CPU actors).
        top_k, threshold, segments, embedding: as `tagger tag`'s options.
        output: "parquet" (rows of `PARQUET_SCHEMA`) or "jsonl" (one `record` string per row).
    """

    checkpoint: list[Any]
    model_id: str
    device: str
    precision: Precision
    channels_last: bool
    compile: CompileMode
    batch_windows: int
    threads: int
    top_k: int
    threshold: float | None
    segments: bool
    output: str
    embedding: bool = False
    taxonomy: str | None = None
    synonyms: str | None = None


class TrackScorer:
    """A Ray Data actor: the checkpoint loaded once, then batches of decoded files scored."""

    def __init__(self, config: ScorerConfig) -> None:
        import ray  # on the worker: the actor process is a Ray worker

        # Expected for the reference front end (n_fft 512, 128 mels), as in `tagger tag`.
        warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
        torch.set_num_threads(config.threads)
        data: bytes = ray.get(config.checkpoint[0])
        with tempfile.TemporaryDirectory() as folder:  # load_checkpoint reads a file
            path = os.path.join(folder, "model.safetensors")
            with open(path, "wb") as handle:
                handle.write(data)
            device = resolve_device(config.device)
            checkpoint = load_checkpoint(path, device=device)
        if checkpoint.model_id != config.model_id:
            raise RuntimeError(f"actor loaded {checkpoint.model_id}, expected {config.model_id}")
        metadata = checkpoint.metadata
        # Embeddings always come with the scores, as in `tagger tag` (the same computation).
        options = RuntimeOptions(
            config.precision, config.channels_last, config.compile, embeddings=True
        )
        self.runtime = Runtime(checkpoint.model, device, options, max_batch=config.batch_windows)
        if config.compile != "off":
            self.runtime.warm_up()
        audio = checkpoint.model.audio
        self.window_samples = audio.window_samples
        self.sample_rate = audio.sample_rate
        thresholds = torch.tensor(metadata.thresholds, dtype=torch.float32)
        if config.threshold is not None:
            thresholds = torch.full_like(thresholds, config.threshold)
        self.tags: tuple[Tag, ...] = tuple(metadata.tags)
        vocabulary = Vocabulary(self.tags)
        self.describer = Describer(
            columns=vocabulary.select(config.taxonomy),
            one_per_group=vocabulary.synonyms(config.synonyms) == "one",
            model_id=checkpoint.model_id,
            tags=self.tags,
            thresholds=thresholds,
            top_k=config.top_k,
            segments=config.segments,
            window_seconds=audio.window_seconds,
            embedding=checkpoint.model.embedding_kind if config.embedding else None,
        )
        self.output = config.output

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        files = [str(f) for f in batch["file"]]
        # A column without any error arrives as nulls, which numpy batches hold as NaN.
        errors: list[str | None] = [e if isinstance(e, str) else None for e in batch["error"]]
        counts = [int(n) for n in batch["n_windows"]]
        stacks = [
            np.frombuffer(bytes(batch["windows"][i]), dtype=np.float32).reshape(
                counts[i], self.window_samples
            )
            for i in range(len(files))
            if errors[i] is None
        ]
        scores: torch.Tensor | None = None
        embeddings: torch.Tensor | None = None
        if stacks:
            try:
                # One call for all windows of the batch's files; the Runtime cuts it into its
                # fixed chunk shapes.
                rows = self.runtime(torch.from_numpy(np.concatenate(stacks)))
                scores, embeddings = split_rows(rows, len(self.tags))
            except Exception as error:  # every file of this batch fails, the job goes on
                message = f"the model failed on a batch holding this file: {error!r}"
                errors = [message if e is None else e for e in errors]
        results = []
        offset = 0
        for i, file in enumerate(files):
            if errors[i] is not None or scores is None:
                results.append(FileResult(path=file, error=errors[i]))
                continue
            window_scores = scores[offset : offset + counts[i]]
            windows = None if embeddings is None else embeddings[offset : offset + counts[i]]
            offset += counts[i]
            n_samples = int(batch["n_samples"][i])
            results.append(
                FileResult(
                    path=file,
                    duration_seconds=n_samples / self.sample_rate,
                    container=str(batch["container"][i]),
                    track_scores=track_scores(window_scores),
                    window_scores=window_scores,
                    window_times=window_times(n_samples, self.window_samples, self.sample_rate),
                    embedding=None if windows is None else track_embedding(windows),
                    window_embeddings=windows,
                )
            )
        records = [self.record(result) for result in results]
        if self.output == "jsonl":
            return pa.table({"record": [json.dumps(r) for r in records]})
        return parquet_table(records)

    def record(self, result: FileResult) -> dict[str, Any]:
        """`tagger tag`'s record of the file, plus every tag's track score."""
        record = self.describer.record(result)
        if result.track_scores is not None:
            values = self.describer.selected_scores(result.track_scores)
            record["scores"] = {
                tag_id: round(v, DIGITS)
                for tag_id, v in zip(self.describer.tag_names, values, strict=True)
            }
        return record


def parquet_table(records: list[dict[str, Any]]) -> pa.Table:
    """Records as rows of `PARQUET_SCHEMA` (fields a record lacks are null)."""
    return pa.Table.from_pylist(records, schema=PARQUET_SCHEMA)


class JsonLinesDatasink(BlockBasedFileDatasink):
    """Writes the `record` column of each block as JSON Lines, one file per write task."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(path, file_format="jsonl", **kwargs)

    def write_block_to_file(self, block: BlockAccessor, file: pa.NativeFile) -> None:
        for line in block.to_arrow().column("record").to_pylist():
            file.write(line.encode("utf-8") + b"\n")
