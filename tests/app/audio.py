"""Real encoded audio for the service tests, made on the fly (no audio files in git).

PyAV (bundled FFmpeg) encodes mp3, wav, flac, opus and m4a/aac; soundfile (libsndfile) encodes
Ogg Vorbis, which this FFmpeg build only has an experimental encoder for.
"""

from __future__ import annotations

import functools
import io

import av
import numpy as np
import soundfile

FORMATS = ("mp3", "wav", "flac", "ogg", "opus", "m4a")

# format -> (PyAV container, codec, sample rate the codec needs or None)
_PYAV = {
    "mp3": ("mp3", "libmp3lame", None),
    "wav": ("wav", "pcm_s16le", None),
    "flac": ("flac", "flac", None),
    "opus": ("ogg", "libopus", 48000),
    "m4a": ("ipod", "aac", None),
}


def music(seconds: float, sample_rate: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A few seconds of something music-like: plucked chord tones over a soft noise bed.

    Returns:
        (T, channels) float32 in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    signal = 0.02 * rng.standard_normal(n)
    note = np.arange(round(2.0 * sample_rate)) / sample_rate  # a note rings for 2 s
    envelope = np.exp(-4.0 * note)
    for k, start in enumerate(range(0, n, sample_rate // 2)):  # a note every half second
        freq = 220.0 * 2 ** (rng.integers(0, 12) / 12)
        tone = sum(np.sin(2 * np.pi * freq * h * note) / (h * 3 + k % 2) for h in (1, 2, 3))
        length = min(len(note), n - start)
        signal[start : start + length] += (envelope * tone)[:length]
    signal = 0.8 * signal / max(1e-6, float(np.abs(signal).max()))
    stereo = np.stack([signal * (1.0 - 0.2 * c) for c in range(channels)], axis=1)
    return stereo.astype(np.float32)


@functools.cache
def encode(fmt: str, seconds: float, *, sample_rate: int = 44100, channels: int = 2) -> bytes:
    """`seconds` of `music` encoded as `fmt` (one of FORMATS)."""
    codec_rate = _PYAV[fmt][2] if fmt in _PYAV else None
    rate = codec_rate or sample_rate
    return encode_samples(music(seconds, rate, channels), rate, fmt)


def encode_samples(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """(T, channels) float32 `samples` encoded as `fmt` (one of FORMATS); opus needs 48 kHz."""
    channels = samples.shape[1]
    if fmt == "ogg":
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, sample_rate, format="OGG", subtype="VORBIS")
        return buffer.getvalue()
    container_format, codec, codec_rate = _PYAV[fmt]
    if codec_rate is not None and codec_rate != sample_rate:
        raise ValueError(f"{fmt} needs {codec_rate} Hz samples, got {sample_rate}")
    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        # Packed float frames; PyAV converts them to the codec's own sample format.
        packed = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


@functools.cache
def wav_pcm16(seconds: float, sample_rate: int = 16000) -> bytes:
    """Mono 16-bit WAV: the cheapest real file to decode, for tests about load, not formats."""
    buffer = io.BytesIO()
    soundfile.write(buffer, music(seconds, sample_rate, 1)[:, 0], sample_rate, format="WAV")
    return buffer.getvalue()


def silent_wav(seconds: float, sample_rate: int = 16000) -> bytes:
    """Mono 16-bit WAV of digital silence."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(round(seconds * sample_rate)), sample_rate, format="WAV")
    return buffer.getvalue()
