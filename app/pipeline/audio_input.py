"""From a file (or its bytes) to the model's windows' input: which files count as audio, the
content check, the decode, and the plain-words message of a file that fails.

Shared by both batch engines: `tagger tag` reads local paths (`read_and_decode`), the Ray Data
engine gets the bytes Ray read from a local disk or an object store (`decode_content`). Both
check the content the same way before FFmpeg sees it.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from model.audio.decode import AudioDecodeError, decode_audio
from model.audio.sniff import SNIFF_BYTES, SUPPORTED_FORMATS, sniff_audio

__all__ = ["AUDIO_SUFFIXES", "decode_content", "failure_message", "read_and_decode"]

# Folder walks pick files by name, as people name audio; the content still decides (see
# `_read_and_decode`), so a misnamed file fails with a reason instead of being guessed at.
AUDIO_SUFFIXES = frozenset(
    {".mp3", ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac"}
    | {".webm", ".mka"}
)


def _check_head(head: bytes) -> None:
    if not head:
        raise AudioDecodeError("the file is empty")
    # The service's rule: FFmpeg demuxes much more than audio (playlists that fetch URLs or read
    # other local files among them), so only content that starts like audio reaches it.
    if sniff_audio(head) is None:
        raise AudioDecodeError(
            f"not audio in a supported format ({SUPPORTED_FORMATS}); the format is recognised "
            "from the content, not from the file name"
        )


def read_and_decode(path: str, sample_rate: int, max_seconds: float | None) -> tuple[Tensor, str]:
    """(samples, container) of one file; raises AudioDecodeError with a reason in plain words."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as error:
        raise AudioDecodeError(f"cannot read the file: {error.strerror or error}") from error
    _check_head(head)
    # Absolute, because FFmpeg reads "name:rest" as protocol and address: a file in the current
    # folder called "http:x.mp3" or "concat:a|b" must still be read as that file.
    decoded = decode_audio(os.path.abspath(path), sample_rate=sample_rate, max_seconds=max_seconds)
    return torch.from_numpy(decoded.samples), decoded.container


def decode_content(data: bytes, sample_rate: int, max_seconds: float | None) -> tuple[Tensor, str]:
    """(samples, container) of a file's bytes; raises AudioDecodeError like `read_and_decode`."""
    _check_head(data[:SNIFF_BYTES])
    decoded = decode_audio(data, sample_rate=sample_rate, max_seconds=max_seconds)
    return torch.from_numpy(decoded.samples), decoded.container


def failure_message(error: Exception, path: str) -> str:
    """Why `path` was not decoded, for its record: the decoder's reason, or what it tripped on."""
    if isinstance(error, AudioDecodeError):
        # The decoder saw the absolute path; the record names the file as the user did.
        return str(error).replace(os.path.abspath(path), path)
    # A decoder tripping over a hostile file is the file's fault, not the run's.
    return f"could not decode the audio: {error!r}"
