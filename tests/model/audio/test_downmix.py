"""The decoder mixes to mono before it resamples: same signal as the old order, same levels."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from model.audio.decode import CLIP, AudioStream, _clean, decode_audio
from tests.app.audio import music
from tests.hardening.corpus import wav_bytes

# Resample-then-average and average-then-resample are both linear: they differ by float
# rounding only (measured: at most 1.2e-7 on 30 s of real music, scripts/bench/decode_formats.py).
ORDER_TOLERANCE = 1e-6


def _pyav_encode(samples: np.ndarray, sample_rate: int, codec: str, container: str) -> bytes:
    """(T, C) float32 encoded with PyAV; C is 1, 2 or 6 (mono, stereo, 5.1)."""
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[samples.shape[1]]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples).reshape(1, -1), format="flt", layout=layout
        )
        frame.sample_rate = sample_rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


def _resample_each_channel_then_average(data: bytes) -> np.ndarray:
    """The order the decoder used until 2026-12-02: every channel resampled to 16 kHz, then the
    mean, written out here with PyAV alone."""
    resampler = av.AudioResampler(format="fltp", rate=16000)
    planes: list[np.ndarray] = []
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(audio=0):
            planes += [out.to_ndarray() for out in resampler.resample(frame)]
        planes += [out.to_ndarray() for out in resampler.resample(None)]
    return np.concatenate(planes, axis=1).mean(axis=0)


def _layout(data: bytes) -> str:
    with av.open(io.BytesIO(data), mode="r") as container:
        return str(container.streams.audio[0].codec_context.layout.name)


@pytest.mark.parametrize(
    ("codec", "container", "rate"),
    [("flac", "flac", 48000), ("flac", "flac", 44100), ("libmp3lame", "mp3", 48000)],
)
def test_stereo_decodes_like_resampling_both_channels_then_averaging(
    codec: str, container: str, rate: int
) -> None:
    data = _pyav_encode(music(6.0, rate, 2), rate, codec, container)
    assert _layout(data) == "stereo"
    old_order = _resample_each_channel_then_average(data)
    decoded = decode_audio(data).samples
    assert decoded.shape == old_order.shape
    assert float(np.abs(decoded - old_order).max()) < ORDER_TOLERANCE


def test_a_wav_without_a_channel_order_is_mixed_as_stereo() -> None:
    # A plain (not WAVE_FORMAT_EXTENSIBLE) WAV names no channel order: FFmpeg calls it
    # "2 channels", and the mix must still be the mean, not FFmpeg's sqrt(2)-louder sum.
    data = wav_bytes(music(4.0, 48000, 2), 48000)
    assert _layout(data) == "2 channels"
    old_order = _resample_each_channel_then_average(data)
    assert float(np.abs(decode_audio(data).samples - old_order).max()) < ORDER_TOLERANCE


def test_the_mix_is_the_mean_of_the_channels() -> None:
    # Left a 1 kHz tone at 0.8, right silent: the mono mix is the tone at 0.4 (-6 dB), not the
    # 0.566 of FFmpeg's own stereo-to-mono pan law. Measured away from the edges' filter ramp.
    t = np.arange(48000 * 2) / 48000
    stereo = np.stack([0.8 * np.sin(2 * np.pi * 1000 * t), np.zeros_like(t)], axis=1)
    data = _pyav_encode(stereo.astype(np.float32), 48000, "flac", "flac")
    mono = decode_audio(data).samples[1600:-1600]
    assert float(np.abs(mono).max()) == pytest.approx(0.4, abs=2e-3)
    assert float(np.sqrt(np.mean(mono**2))) == pytest.approx(0.4 / np.sqrt(2), abs=2e-3)


def test_mono_input_keeps_its_level() -> None:
    t = np.arange(44100) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, np.newaxis]
    mono = decode_audio(_pyav_encode(tone, 44100, "flac", "flac")).samples[800:-800]
    assert float(np.abs(mono).max()) == pytest.approx(0.5, abs=2e-3)


def test_surround_is_the_mean_of_all_six_channels() -> None:
    # 5.1 keeps the old order (FFmpeg's surround matrix weighs centre and LFE, it is no mean).
    # At 16 kHz nothing is resampled, so the mean of the 16-bit samples is exact.
    rng = np.random.default_rng(1)
    six = (0.3 * rng.standard_normal((16000, 6))).clip(-1, 1).astype(np.float32)
    data = _pyav_encode(six, 16000, "flac", "flac")
    stored, _ = soundfile.read(io.BytesIO(data), dtype="float32")
    assert stored.shape == (16000, 6)
    decoded = decode_audio(data).samples
    assert np.allclose(decoded, stored.mean(axis=1), atol=1e-6)


def _wav_with_a_big_chunk_first(samples: np.ndarray, sample_rate: int) -> bytes:
    """A 16-bit WAV whose 'data' chunk comes after 200 kB of another chunk (as broadcast WAVs
    with embedded metadata do): beyond the small probe the decoder asks FFmpeg for."""
    pcm = (samples * 32767).astype("<i2").tobytes()
    channels = samples.shape[1]
    fmt = struct.pack(
        "<HHIIHH", 1, channels, sample_rate, sample_rate * 2 * channels, 2 * channels, 16
    )
    junk = b"\0" * 200_000
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"LIST"
        + struct.pack("<I", len(junk))
        + junk
        + b"data"
        + struct.pack("<I", len(pcm))
        + pcm
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_a_wav_with_a_metadata_chunk_beyond_the_probe_decodes() -> None:
    stereo = music(3.0, 16000, 2)
    data = _wav_with_a_big_chunk_first(stereo, 16000)
    decoded = decode_audio(data)
    assert decoded.decoder == "pyav"
    assert decoded.container == "wav"
    assert np.allclose(decoded.samples, stereo.mean(axis=1), atol=1e-4)  # 16-bit rounding


def test_a_wav_read_from_a_path_decodes_like_its_bytes(tmp_path: Path) -> None:
    data = wav_bytes(music(3.0, 44100, 2), 44100)
    path = tmp_path / "clip.wav"
    path.write_bytes(data)
    assert np.array_equal(decode_audio(path).samples, decode_audio(data).samples)


def test_chunks_are_float32_arrays_the_stream_owns() -> None:
    # The service's decode worker sends each chunk on; it must be contiguous float32 that no
    # later frame of the decoder overwrites.
    data = _pyav_encode(music(3.0, 48000, 2), 48000, "flac", "flac")
    chunks = [c for c in AudioStream(data) if isinstance(c, np.ndarray)]
    assert len(chunks) == 3
    for chunk in chunks:
        assert chunk.dtype == np.float32
        assert chunk.flags.c_contiguous
        assert chunk.flags.writeable
    assert not any(np.shares_memory(a, b) for i, a in enumerate(chunks) for b in chunks[i + 1 :])


def test_cleaning_works_in_place() -> None:
    chunk = np.array([np.nan, np.inf, -np.inf, 1e6, -1e6, 0.25], dtype=np.float32)
    cleaned = _clean(chunk)
    assert cleaned is chunk  # no copy of every decoded second
    assert cleaned.tolist() == [0.0, 0.0, 0.0, CLIP, -CLIP, 0.25]
