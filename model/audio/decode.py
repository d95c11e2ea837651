"""Decode any supported audio file to a mono float32 waveform at the model's sample rate.

PyAV (bundled FFmpeg) decodes and resamples everything we accept: mp3, wav, flac, ogg/vorbis,
opus, m4a/aac. The format is decided by content, never by a file name. Some valid files in the
wild are refused by FFmpeg at open ("Invalid data found when processing input") yet read fine
with libsndfile, so a file PyAV refuses gets a second chance with soundfile before we call it
undecodable.

Duration limits count decoded samples as they arrive, whatever the header claims, so a file that
claims hours (or lies about being short) stops costing memory at the limit. Decoding work is
bounded too: resampling costs in proportion to the *input* samples, so a file may hold at most
as many (channels x native rate x seconds) as `max_seconds` of 192 kHz stereo. Without that, a
FLAC of 8-channel 192 kHz silence (hours in under a megabyte) made the decoder resample 17 times
the samples of a 44.1 kHz stereo file before the duration limit stopped it.

Damaged files are decoded as far as they can be: a packet the codec rejects is skipped (as the
`ffmpeg` command does), so a truncated download still yields its intact part, and a file is
refused only when more than a quarter of its packets are corrupt. Samples are clipped at
+/-100 (40 dB over full scale): no recording comes near it, and the absurd values of damaged or
hostile float files would otherwise overflow the model's power spectrum into NaN.

This module is plain Python (no FastAPI), so training and the command-line tagger use it too.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import soundfile
import torch
import torchaudio

AudioSource = bytes | str | os.PathLike[str]


class AudioDecodeError(ValueError):
    """The input is not audio we can decode; the message says why in plain words."""


class EmptyAudioError(AudioDecodeError):
    """The file decoded to no samples at all."""


class AudioTooLongError(AudioDecodeError):
    """The decoded audio exceeds the configured maximum duration."""

    def __init__(self, max_seconds: float) -> None:
        super().__init__(f"audio is longer than the limit of {max_seconds:g} seconds")
        self.max_seconds = max_seconds


@dataclass(frozen=True)
class DecodedAudio:
    """A mono waveform and how it was obtained.

    Attributes:
        samples: (T,) float32 in roughly [-1, 1], non-finite values replaced by 0, clipped
            at +/-`CLIP`.
        sample_rate: Hz of `samples`.
        decoder: "pyav" or "soundfile".
        container: The container format the decoder recognised (e.g. "mp3", "ogg").
    """

    samples: np.ndarray
    sample_rate: int
    decoder: str
    container: str

    @property
    def duration_seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def _open_input(source: AudioSource) -> BinaryIO | str:
    if isinstance(source, bytes | bytearray):
        return io.BytesIO(source)
    return str(Path(source))


# Input samples (all channels) one second of the densest ordinary audio holds: 192 kHz stereo.
DENSEST_INPUT_PER_SECOND = 192_000 * 2
# More corrupt packets than this share of all packets makes a file undecodable.
MAX_CORRUPT_SHARE = 0.25
# Beyond full scale by 40 dB; see the module docstring.
CLIP = 100.0


class _SampleBuffer:
    """Collects decoded chunks and enforces the sample and decoding-work limits."""

    def __init__(self, max_samples: int | None, max_seconds: float | None) -> None:
        self.chunks: list[np.ndarray] = []
        self.count = 0
        self.input_count = 0
        self.max_samples = max_samples
        self.max_seconds = max_seconds
        self.max_input = (
            None if max_seconds is None else round(max_seconds * DENSEST_INPUT_PER_SECOND)
        )

    def _too_long(self) -> AudioTooLongError:
        assert self.max_seconds is not None
        return AudioTooLongError(self.max_seconds)

    def add_input(self, samples: int) -> None:
        """Count `samples` decoded input samples (all channels) before they are resampled."""
        self.input_count += samples
        if self.max_input is not None and self.input_count > self.max_input:
            raise self._too_long()

    def add(self, chunk: np.ndarray) -> None:
        self.count += len(chunk)
        if self.max_samples is not None and self.count > self.max_samples:
            raise self._too_long()
        self.chunks.append(chunk.astype(np.float32, copy=False))

    def result(self) -> np.ndarray:
        if not self.chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self.chunks)


def _downmix(frame: av.AudioFrame) -> np.ndarray:
    """Mean over channels of a packed float frame."""
    channels = len(frame.layout.channels)
    return frame.to_ndarray().reshape(-1, channels).mean(axis=1)


class _Resampler:
    """Resamples decoded frames to packed float mono-to-be at the target rate.

    Keeps the channels and averages them itself: FFmpeg's mono downmix applies a pan law (-3 dB
    per channel), while soundfile and librosa (musicnn's pipeline) take the mean. Packed samples
    on purpose: PyAV 18's to_ndarray() segfaults on 8-channel planar frames. One-second output
    frames: per-frame overhead dominated with codec-sized frames (1,152 samples for mp3); this
    nearly halves the decode time of a 30 s mp3. A stream whose rate, layout or sample format
    changes midway (concatenated mp3s, damaged frame headers) gets a fresh resampler: PyAV's
    refuses frames unlike its first.
    """

    def __init__(self, sample_rate: int, buffer: _SampleBuffer) -> None:
        self.sample_rate = sample_rate
        self.buffer = buffer
        self._resampler: av.AudioResampler | None = None
        self._source: tuple[str, str, int] | None = None

    def add(self, frame: av.AudioFrame) -> None:
        self.buffer.add_input(frame.samples * len(frame.layout.channels))
        source = (frame.format.name, frame.layout.name, frame.sample_rate)
        if source != self._source:
            self.flush()
            self._resampler = av.AudioResampler(
                format="flt", rate=self.sample_rate, frame_size=self.sample_rate
            )
            self._source = source
        assert self._resampler is not None
        for out in self._resampler.resample(frame):
            self.buffer.add(_downmix(out))

    def flush(self) -> None:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self.buffer.add(_downmix(out))


def _decode_pyav(
    source: AudioSource, sample_rate: int, buffer: _SampleBuffer
) -> tuple[np.ndarray, str]:
    with av.open(_open_input(source), mode="r", metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise AudioDecodeError("the file contains no audio stream")
        stream = container.streams.audio[0]
        resampler = _Resampler(sample_rate, buffer)
        packets = corrupt = 0
        try:
            for packet in container.demux(stream):
                packets += 1
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    corrupt += 1
                    continue
                for frame in frames:
                    resampler.add(frame)
        except av.error.FFmpegError:
            if not buffer.input_count:
                raise
            corrupt += 1  # the container broke off (a truncated file): keep what came before
        if corrupt > MAX_CORRUPT_SHARE * packets:
            raise AudioDecodeError(f"{corrupt} of {packets} packets are corrupt")
        resampler.flush()
        return buffer.result(), str(container.format.name)


def _decode_soundfile(
    source: AudioSource, sample_rate: int, buffer: _SampleBuffer
) -> tuple[np.ndarray, str]:
    with soundfile.SoundFile(_open_input(source)) as handle:
        native_rate = int(handle.samplerate)
        if native_rate <= 0:
            raise AudioDecodeError("the file declares an invalid sample rate")
        ratio = sample_rate / native_rate
        native: list[np.ndarray] = []
        for block in handle.blocks(blocksize=native_rate * 10, dtype="float32", always_2d=True):
            buffer.add_input(block.size)
            mono = block.mean(axis=1)
            # Count in output samples so the limit means the same for both decoders.
            buffer.count += round(len(mono) * ratio)
            if buffer.max_samples is not None and buffer.count > buffer.max_samples:
                assert buffer.max_seconds is not None
                raise AudioTooLongError(buffer.max_seconds)
            native.append(mono)
        container = str(handle.format).lower()
    if not native:
        return np.zeros(0, dtype=np.float32), container
    waveform = torch.from_numpy(np.concatenate(native))
    if native_rate != sample_rate:
        waveform = torchaudio.functional.resample(waveform, native_rate, sample_rate)
    return waveform.numpy(), container


def decode_audio(
    source: AudioSource,
    *,
    sample_rate: int = 16000,
    max_seconds: float | None = None,
) -> DecodedAudio:
    """Decode `source` (bytes or a path) to mono float32 at `sample_rate`.

    Raises:
        AudioTooLongError: more than `max_seconds` of audio.
        EmptyAudioError: no samples.
        AudioDecodeError: neither PyAV nor soundfile can read it.
    """
    max_samples = None if max_seconds is None else int(max_seconds * sample_rate)
    try:
        samples, container = _decode_pyav(
            source, sample_rate, _SampleBuffer(max_samples, max_seconds)
        )
        decoder = "pyav"
    except AudioTooLongError:
        raise
    except (av.error.FFmpegError, AudioDecodeError, ValueError, OSError) as pyav_error:
        try:
            samples, container = _decode_soundfile(
                source, sample_rate, _SampleBuffer(max_samples, max_seconds)
            )
            decoder = "soundfile"
        except AudioTooLongError:
            raise
        except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError) as sf_error:
            if isinstance(source, str | os.PathLike) and not Path(source).exists():
                raise AudioDecodeError(f"no such file: {source}") from sf_error
            raise AudioDecodeError(
                "could not decode the audio: it is not a supported format (mp3, wav, flac, "
                f"ogg/vorbis, opus, m4a/aac) or it is corrupted ({_first_line(pyav_error)})"
            ) from pyav_error
    if samples.size == 0:
        raise EmptyAudioError("the file contains no audio samples")
    samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    np.clip(samples, -CLIP, CLIP, out=samples)
    return DecodedAudio(
        samples=samples, sample_rate=sample_rate, decoder=decoder, container=container
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
