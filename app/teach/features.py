"""The frozen part of the model per window, computed once per file and kept on disk.

Teaching trains only new queries, rows and probes, so everything before them (decoding, the
backbone, the encoder) is the same at every step and every fold: it is computed once per file
and cached as one small safetensors file per (base model, file content), keyed by the base
checkpoint's sha256 and the file's sha256, so a renamed file hits and an edited one misses.

Per file it holds, for up to `max_windows` evenly spaced tagging windows (the windows
`model.inference.split_windows` cuts): the encoder's output (`memory`, windows × 32 × d_model)
and the L2-normalised pooled embedding (`embedding`). Computed in fp32, eagerly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from app.teach.fit import Windows
from model.audio.decode import AudioDecodeError, decode_audio
from model.checkpoint import Checkpoint
from model.inference import split_windows
from model.q2l import Query2Label

DEFAULT_MAX_WINDOWS = 16


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "music-tagger" / "teach"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileFeatures:
    memory: torch.Tensor  # (W, T, d_model)
    embedding: torch.Tensor  # (W, D), unit length


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str


class FeatureCache:
    """Computes or loads each file's cached windows for one base checkpoint."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        folder: Path | None = None,
        max_windows: int = DEFAULT_MAX_WINDOWS,
        batch_windows: int = 8,
    ) -> None:
        if not isinstance(checkpoint.model, Query2Label):
            raise ValueError(
                f"{checkpoint.model_id} is a {checkpoint.model.architecture} model; tags can "
                "only be taught to a Query2Label model (it has label queries)"
            )
        self.model = checkpoint.model.eval()
        self.folder = (folder or default_cache_dir()) / f"{checkpoint.sha256[:16]}-w{max_windows}"
        self.max_windows = max_windows
        self.batch_windows = batch_windows
        self.sample_rate = self.model.audio.sample_rate
        self.window = self.model.audio.window_samples
        self.pos = self.model.memory_and_embedding(torch.zeros(1, self.window))[1].detach()
        self.hits = 0
        self.misses = 0

    def entry(self, sha256: str) -> Path:
        return self.folder / f"{sha256}.safetensors"

    def load(self, path: str, sha256: str) -> FileFeatures:
        cached = self.entry(sha256)
        if cached.is_file():
            try:
                tensors = load_file(str(cached))
                self.hits += 1
                return FileFeatures(tensors["memory"], tensors["embedding"])
            except Exception:  # a damaged cache entry is recomputed, never trusted
                cached.unlink(missing_ok=True)
        audio = decode_audio(path, sample_rate=self.sample_rate)
        features = self.compute(self.windows_of(torch.from_numpy(audio.samples)))
        self.store(sha256, features)
        return features

    def store(self, sha256: str, features: FileFeatures) -> None:
        self.misses += 1
        cached = self.entry(sha256)
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{os.getpid()}.partial")
        save_file({"memory": features.memory, "embedding": features.embedding}, str(partial))
        partial.replace(cached)  # readers never see half an entry

    def windows_of(self, samples: torch.Tensor) -> torch.Tensor:
        """The (at most `max_windows`, evenly spaced) tagging windows of a waveform (T,)."""
        windows = split_windows(samples, self.window)
        if len(windows) > self.max_windows:
            keep = torch.linspace(0, len(windows) - 1, self.max_windows).round().long()
            windows = windows[keep]
        return windows

    @torch.inference_mode()
    def compute(self, windows: torch.Tensor) -> FileFeatures:
        memories, embeddings = [], []
        for start in range(0, len(windows), self.batch_windows):
            memory, _, pooled = self.model.memory_and_embedding(
                windows[start : start + self.batch_windows]
            )
            memories.append(memory.float())
            embeddings.append(F.normalize(pooled.float(), dim=1))
        return FileFeatures(torch.cat(memories).contiguous(), torch.cat(embeddings).contiguous())


def gather(
    cache: FeatureCache,
    paths: Sequence[str],
    progress: Callable[[str], None] | None = None,
) -> tuple[Windows, list[str], list[Failure]]:
    """Every file's windows, concatenated; with the files' sha256 and the ones that failed.

    A file that cannot be read or decoded is reported in the failures (with why), never
    skipped silently: the caller refuses to teach with failures."""
    memories, embeddings, tracks = [], [], []
    digests: list[str] = []
    failures: list[Failure] = []
    for index, path in enumerate(paths):
        try:
            digest = file_sha256(path)
            features = cache.load(path, digest)
        except FileNotFoundError:
            failures.append(Failure(path, "no such file"))
            digest = ""
        except (AudioDecodeError, OSError) as error:
            failures.append(Failure(path, str(error) or type(error).__name__))
            digest = ""
        else:
            memories.append(features.memory)
            embeddings.append(features.embedding)
            tracks.append(torch.full((len(features.memory),), index, dtype=torch.long))
        digests.append(digest)
        if progress is not None:
            progress(path)
    if not memories:
        empty = torch.zeros(0)
        return Windows(empty, cache.pos, empty, empty.long()), digests, failures
    windows = Windows(torch.cat(memories), cache.pos, torch.cat(embeddings), torch.cat(tracks))
    return windows, digests, failures
