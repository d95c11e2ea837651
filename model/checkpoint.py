"""The checkpoint format the service loads and training exports.

One `.safetensors` file. Its header's metadata holds a single JSON document under the key
`music_tagger`:

    format, format_version   "music-tagger-checkpoint", 1
    preset, architecture     e.g. "q2l-small", "q2l"
    config                   the full model config (see model.config)
    frontend                 the audio front-end parameters, copied out of the config for readers
    tags                     ordered [{name, category, synonym_group, taxonomy}], one per
                             output. `taxonomy` ("mtt", "msd") is absent in a single-vocabulary
                             file (every file from before two vocabularies), whose tags are
                             then named by their bare names; a multi-vocabulary file gives every
                             tag one, and outputs name it by its id `taxonomy/name`. Ids must be
                             unique (model.tags.check_vocabulary), so two `rock`s need two
                             taxonomies.
    thresholds               per-tag decision thresholds (0.5 until calibrated)
    provenance               free-form: training data, metrics, code version, date, licences
    content_sha256           digest of everything above plus every tensor's name, dtype, shape
                             and bytes, so a modified or corrupted file is refused

Loading never unpickles anything: safetensors holds raw tensors and the metadata is JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.base import TaggingModel
from model.config import config_from_dict, config_to_dict
from model.tags import MTAT_TAGS, Tag, check_vocabulary
from model.zoo import ARCHITECTURES, architecture_of, build_model

FORMAT = "music-tagger-checkpoint"
FORMAT_VERSION = 1
_METADATA_KEY = "music_tagger"
_FRONTEND_KEYS = ("audio", "mel", "n_fft", "hop_length", "n_harmonics", "semitone_scale")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class CheckpointMetadata:
    preset: str
    architecture: str
    config: dict[str, Any]
    tags: tuple[Tag, ...]
    thresholds: tuple[float, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def frontend(self) -> dict[str, Any]:
        return {key: self.config[key] for key in _FRONTEND_KEYS if key in self.config}

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "preset": self.preset,
            "architecture": self.architecture,
            "config": self.config,
            "frontend": self.frontend,
            "tags": [tag.to_dict() for tag in self.tags],
            "thresholds": list(self.thresholds),
            "provenance": self.provenance,
        }


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the network in eval mode and what the file says about it."""

    model: TaggingModel
    metadata: CheckpointMetadata
    sha256: str
    path: Path

    @property
    def model_id(self) -> str:
        return f"{self.metadata.preset}@{self.sha256[:12]}"


def _code_version() -> str:
    try:
        return importlib_metadata.version("music-tagger")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _content_digest(document: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: TaggingModel,
    *,
    preset: str,
    tags: Sequence[Tag] | None = None,
    thresholds: Sequence[float] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write `model` and its metadata to one safetensors file; returns the path.

    Args:
        path: Destination, conventionally ending in `.safetensors`.
        model: The network (its config is stored in full).
        preset: The preset it was built from (must match the model's architecture).
        tags: One per output; defaults to the 50 MTAT tags.
        thresholds: One per output in [0, 1]; defaults to 0.5 each.
        provenance: Training data, metrics, licences...; `code_version` and `created` are added.
    """
    if architecture_of(preset) != model.architecture:
        raise ValueError(f"preset {preset!r} is not a {model.architecture} model")
    tags = tuple(tags) if tags is not None else MTAT_TAGS
    thresholds = tuple(float(t) for t in thresholds) if thresholds is not None else None
    metadata = CheckpointMetadata(
        preset=preset,
        architecture=model.architecture,
        config=config_to_dict(model.config),
        tags=tags,
        thresholds=thresholds or (0.5,) * len(tags),
        provenance={
            "code_version": _code_version(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **(provenance or {}),
        },
    )
    _validate(metadata, model.n_classes, Path(path))
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    document = metadata.to_json_dict()
    document["content_sha256"] = _content_digest(document, tensors)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={_METADATA_KEY: json.dumps(document)})
    return path


def _validate(metadata: CheckpointMetadata, n_classes: int, path: Path) -> None:
    if len(metadata.tags) != n_classes:
        raise CheckpointError(
            f"{path}: {len(metadata.tags)} tags for a model with {n_classes} outputs"
        )
    try:
        check_vocabulary(metadata.tags)
    except ValueError as error:
        raise CheckpointError(f"{path}: invalid vocabulary: {error}") from error
    if len(metadata.thresholds) != n_classes:
        raise CheckpointError(
            f"{path}: {len(metadata.thresholds)} thresholds for a model with {n_classes} outputs"
        )
    if any(not 0.0 <= t <= 1.0 for t in metadata.thresholds):
        raise CheckpointError(f"{path}: thresholds must lie in [0, 1]")


def _read_document(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own Rust-side error types
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or corrupted?): {error}"
        ) from error
    if _METADATA_KEY not in header:
        raise CheckpointError(f"{path}: a safetensors file without music-tagger metadata")
    try:
        document = json.loads(header[_METADATA_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: metadata is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{path}: metadata is not a {FORMAT} document")
    if document.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {document.get('format_version')!r} is not supported "
            f"(this code reads version {FORMAT_VERSION})"
        )
    return document, tensors


def _parse_metadata(document: dict[str, Any], path: Path) -> CheckpointMetadata:
    try:
        preset = document["preset"]
        architecture = architecture_of(preset)
        if document.get("architecture") != architecture:
            raise ValueError(
                f"architecture {document.get('architecture')!r} does not match preset {preset!r}"
            )
        config_type = ARCHITECTURES[architecture][0]
        config = config_from_dict(config_type, document["config"])
        metadata = CheckpointMetadata(
            preset=preset,
            architecture=architecture,
            config=config_to_dict(config),
            tags=tuple(Tag.from_dict(tag) for tag in document["tags"]),
            thresholds=tuple(float(t) for t in document["thresholds"]),
            provenance=dict(document.get("provenance") or {}),
        )
    except (KeyError, TypeError, ValueError) as error:
        missing = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        raise CheckpointError(f"{path}: invalid metadata: {missing}") from error
    if document.get("frontend") != metadata.frontend:
        raise CheckpointError(f"{path}: front-end parameters disagree with the model config")
    _validate(metadata, config.n_classes, path)
    return metadata


def read_metadata(path: str | Path) -> CheckpointMetadata:
    """The metadata of a checkpoint, validated, without building the network."""
    path = Path(path)
    document, _ = _read_document(path)
    return _parse_metadata(document, path)


def load_checkpoint(path: str | Path, *, device: torch.device | str = "cpu") -> Checkpoint:
    """Load and verify a checkpoint; the model comes back in eval mode on `device`.

    Raises:
        CheckpointError: missing, truncated, tampered or mismatched file; the message says which.
    """
    path = Path(path)
    document, tensors = _read_document(path)
    recorded = document.pop("content_sha256", None)
    if recorded != _content_digest(document, tensors):
        raise CheckpointError(
            f"{path}: content digest mismatch: the file was modified or corrupted after export"
        )
    metadata = _parse_metadata(document, path)
    config = config_from_dict(ARCHITECTURES[metadata.architecture][0], metadata.config)
    model = build_model(metadata.preset, config)
    expected = {name: t.shape for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{name} {tuple(tensors[name].shape)} != {tuple(shape)}"
        for name, shape in expected.items()
        if name in tensors and tensors[name].shape != shape
    ]
    if missing or unexpected or wrong:
        problems = [
            f"missing tensors: {', '.join(missing[:5])}" if missing else "",
            f"unexpected tensors: {', '.join(unexpected[:5])}" if unexpected else "",
            f"wrong shapes: {'; '.join(wrong[:5])}" if wrong else "",
        ]
        detail = "; ".join(p for p in problems if p)
        raise CheckpointError(f"{path}: weights do not fit the {metadata.preset} config: {detail}")
    model.load_state_dict(tensors, strict=True)
    model.to(device).eval()
    return Checkpoint(model=model, metadata=metadata, sha256=file_sha256(path), path=path)
