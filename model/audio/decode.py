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

`AudioStream` yields the audio in one-second chunks as it is decoded (the service's decode
workers stream them into windows, so a two-hour file never exists as one array); `decode_audio`
collects them. This module is plain Python (no FastAPI, no torch: a decode worker process imports
only PyAV, soundfile and NumPy), so training and the command-line tagger use it too.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import soundfile

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


# FFmpeg reads up to this many bytes of a WAV file to "find the stream info" its header already
# gave: the default 5 MB cost 26 ms per file however short (more than decoding 30 s of it).
WAV_PROBE_BYTES = 32_768


def _open_options(source: AudioSource) -> dict[str, str]:
    """Demuxer options for `source`: a small probe for RIFF/RF64 WAVE, FFmpeg's defaults else."""
    if isinstance(source, bytes | bytearray):
        head = bytes(source[:12])
    else:
        try:
            with open(source, "rb") as handle:
                head = handle.read(12)
        except OSError:
            return {}  # av.open reports it
    is_wav = head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE"
    return {"probesize": str(WAV_PROBE_BYTES)} if is_wav else {}


# Input samples (all channels) one second of the densest ordinary audio holds: 192 kHz stereo.
DENSEST_INPUT_PER_SECOND = 192_000 * 2
# More corrupt packets than this share of all packets makes a file undecodable.
MAX_CORRUPT_SHARE = 0.25
# Beyond full scale by 40 dB; see the module docstring.
CLIP = 100.0


class _Restart:
    """Yielded by `AudioStream` when the fallback decoder starts over: forget what came before."""

    def __repr__(self) -> str:
        return "RESTART"


RESTART = _Restart()
Chunk = np.ndarray | _Restart


class _Limits:
    """Counts decoded samples and enforces the duration and decoding-work limits."""

    def __init__(self, sample_rate: int, max_seconds: float | None) -> None:
        self.count = 0
        self.input_count = 0
        self.max_seconds = max_seconds
        self.max_samples = None if max_seconds is None else int(max_seconds * sample_rate)
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

    def add(self, samples: int) -> None:
        """Count `samples` output samples (mono, at the target rate)."""
        self.count += samples
        if self.max_samples is not None and self.count > self.max_samples:
            raise self._too_long()


def _clean(chunk: np.ndarray) -> np.ndarray:
    """Non-finite samples 0, the rest clipped at +/-CLIP, in place: every chunk the decoders
    yield is a float32 array of their own (a resampler's output frame or a fresh mean)."""
    np.nan_to_num(chunk, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(chunk, -CLIP, CLIP, out=chunk)


def _downmix(frame: av.AudioFrame) -> np.ndarray:
    """Mean over channels of a packed float frame."""
    channels = len(frame.layout.channels)
    return frame.to_ndarray().reshape(-1, channels).mean(axis=1, dtype=np.float32)


# FFmpeg mixes stereo to mono as (L + R) / sqrt(2) (a -3 dB pan law, no normalisation for
# float output); this gain turns that into the mean, (L + R) / 2. Mono passes unchanged. Other
# layouts get FFmpeg's surround matrix (centre and LFE levels), not the mean, so they are
# resampled with all their channels and averaged afterwards, as before.
# "1 channels" and "2 channels" are FFmpeg's names for a count without a channel order (plain
# WAV files): it mixes them as mono and stereo.
_MONO_GAIN = {
    "mono": 1.0,
    "1 channels": 1.0,
    "stereo": float(np.sqrt(0.5)),
    "2 channels": float(np.sqrt(0.5)),
}


class _Resampler:
    """Resamples decoded frames to packed float mono at the target rate.

    Mono and stereo (nearly every file) are mixed to one channel by FFmpeg *before* it
    resamples, so the costly filter runs over one channel instead of two; `_MONO_GAIN` makes the
    mix the mean of the channels, which is what soundfile and librosa (musicnn's pipeline) take.
    Linear both ways, so the result equals resample-then-average to float rounding (max 1.2e-7
    on real music, see scripts/bench/decode_formats.py). Other layouts keep their channels
    through the resampler and are averaged here: FFmpeg's surround downmix is not the mean, and
    PyAV 18's to_ndarray() segfaults on 8-channel planar frames, so they are never converted
    frame by frame. One-second output frames: per-frame overhead dominated with codec-sized
    frames (1,152 samples for mp3). A stream whose rate, layout or sample format changes midway
    (concatenated mp3s, damaged frame headers) gets a fresh resampler: PyAV's refuses frames
    unlike its first.
    """

    def __init__(self, sample_rate: int, limits: _Limits) -> None:
        self.sample_rate = sample_rate
        self.limits = limits
        self._resampler: av.AudioResampler | None = None
        self._channels = 0
        self._gain: float | None = None  # None: the resampler keeps every channel

    def add(self, frame: av.AudioFrame) -> list[np.ndarray]:
        """The mono chunks `frame` completes (mostly none: they are a second long).

        A list, not a generator, and no per-frame look at the frame's format: vorbis and opus
        come in frames of a few hundred samples, thousands per minute, and Python's per-frame
        overhead was a tenth of their decode time. PyAV's resampler checks that a frame matches
        its first (in C) and raises ValueError if not; only then is a new one built.
        """
        done: list[np.ndarray] = []
        frames: list[av.AudioFrame] | None = None
        if self._resampler is not None:
            try:
                frames = self._resampler.resample(frame)
            except ValueError:  # the rate, layout or sample format changed midway
                done = self.flush()
        if frames is None:
            self._channels = frame.layout.nb_channels
            self._gain = _MONO_GAIN.get(frame.layout.name)
            self._resampler = av.AudioResampler(
                format="flt",
                layout="mono" if self._gain is not None else None,
                rate=self.sample_rate,
                frame_size=self.sample_rate,
            )
            self.limits.add_input(frame.samples * self._channels)
            frames = self._resampler.resample(frame)
        else:
            self.limits.add_input(frame.samples * self._channels)
        if frames:
            done += self._mono(frames)
        return done

    def flush(self) -> list[np.ndarray]:
        if self._resampler is None:
            return []
        return self._mono(self._resampler.resample(None))

    def _mono(self, frames: list[av.AudioFrame]) -> list[np.ndarray]:
        chunks = []
        for out in frames:
            if self._gain is None:
                mono = _downmix(out)
            else:
                mono = out.to_ndarray().reshape(-1)
                if self._gain != 1.0:
                    mono *= np.float32(self._gain)
            self.limits.add(len(mono))
            chunks.append(mono)
        return chunks


class AudioStream:
    """The decoded audio of `source` as consecutive mono float32 chunks (about one second each).

    Iterate once. Chunks are cleaned (non-finite values 0, clipped at +/-`CLIP`). When PyAV
    fails after it already yielded audio and soundfile reads the file instead, the stream
    yields `RESTART` and then the whole file again: the consumer drops what it had. After the
    iteration, `decoder` and `container` say how the file was read.

    Raises (while iterating):
        AudioTooLongError: more than `max_seconds` of audio.
        EmptyAudioError: no samples.
        AudioDecodeError: neither PyAV nor soundfile can read it.
    """

    def __init__(
        self, source: AudioSource, *, sample_rate: int = 16000, max_seconds: float | None = None
    ) -> None:
        self.source = source
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.decoder = ""
        self.container = ""

    def __iter__(self) -> Iterator[Chunk]:
        emitted = 0
        try:
            for chunk in self._pyav(_Limits(self.sample_rate, self.max_seconds)):
                emitted += len(chunk)
                yield _clean(chunk)
            self.decoder = "pyav"
        except AudioTooLongError:
            raise
        except (av.error.FFmpegError, AudioDecodeError, ValueError, OSError) as pyav_error:
            if emitted:
                yield RESTART
            emitted = 0
            try:
                for chunk in self._soundfile(_Limits(self.sample_rate, self.max_seconds)):
                    emitted += len(chunk)
                    yield _clean(chunk)
                self.decoder = "soundfile"
            except AudioTooLongError:
                raise
            except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError) as sf_error:
                source = self.source
                if isinstance(source, str | os.PathLike) and not Path(source).exists():
                    raise AudioDecodeError(f"no such file: {source}") from sf_error
                raise AudioDecodeError(
                    "could not decode the audio: it is not a supported format (mp3, wav, flac, "
                    f"ogg/vorbis, opus, m4a/aac) or it is corrupted ({_first_line(pyav_error)})"
                ) from pyav_error
        if not emitted:
            raise EmptyAudioError("the file contains no audio samples")

    def _pyav(self, limits: _Limits) -> Iterator[np.ndarray]:
        with av.open(
            _open_input(self.source),
            mode="r",
            metadata_errors="ignore",
            options=_open_options(self.source),
        ) as container:
            if not container.streams.audio:
                raise AudioDecodeError("the file contains no audio stream")
            self.container = str(container.format.name)
            stream = container.streams.audio[0]
            # One decoder thread: of the audio codecs only FLAC can use more (frame threads),
            # and two cost it 1.6x the CPU time for a 10 % faster wall time on 2 cores, while
            # the service already decodes files in parallel processes beside the model.
            stream.codec_context.thread_count = 1
            resampler = _Resampler(self.sample_rate, limits)
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
                        yield from resampler.add(frame)
            except av.error.FFmpegError:
                if not limits.input_count:
                    raise
                corrupt += 1  # the container broke off (a truncated file): keep what came before
            if corrupt > MAX_CORRUPT_SHARE * packets:
                raise AudioDecodeError(f"{corrupt} of {packets} packets are corrupt")
            yield from resampler.flush()

    def _soundfile(self, limits: _Limits) -> Iterator[np.ndarray]:
        with soundfile.SoundFile(_open_input(self.source)) as handle:
            native_rate = int(handle.samplerate)
            if native_rate <= 0:
                raise AudioDecodeError("the file declares an invalid sample rate")
            self.container = str(handle.format).lower()
            resampler = (
                None
                if native_rate == self.sample_rate
                else av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
            )
            for block in handle.blocks(blocksize=native_rate, dtype="float32", always_2d=True):
                limits.add_input(block.size)
                mono = block.mean(axis=1, dtype=np.float32)
                for out in self._resample_mono(resampler, mono, native_rate):
                    limits.add(len(out))
                    yield out
            if resampler is not None:
                for frame in resampler.resample(None):
                    out = frame.to_ndarray().reshape(-1)
                    limits.add(len(out))
                    yield out

    @staticmethod
    def _resample_mono(
        resampler: av.AudioResampler | None, mono: np.ndarray, native_rate: int
    ) -> Iterator[np.ndarray]:
        if resampler is None:
            yield mono
            return
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(mono)[np.newaxis, :], format="flt", layout="mono"
        )
        frame.sample_rate = native_rate
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1)


def decode_audio(
    source: AudioSource,
    *,
    sample_rate: int = 16000,
    max_seconds: float | None = None,
) -> DecodedAudio:
    """Decode `source` (bytes or a path) to mono float32 at `sample_rate`, all at once.

    Raises:
        AudioTooLongError: more than `max_seconds` of audio.
        EmptyAudioError: no samples.
        AudioDecodeError: neither PyAV nor soundfile can read it.
    """
    stream = AudioStream(source, sample_rate=sample_rate, max_seconds=max_seconds)
    chunks: list[np.ndarray] = []
    for chunk in stream:
        if isinstance(chunk, np.ndarray):
            chunks.append(chunk)
        else:
            chunks.clear()
    return DecodedAudio(
        samples=np.concatenate(chunks),
        sample_rate=sample_rate,
        decoder=stream.decoder,
        container=stream.container,
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
