"""Regression tests for what the hostile corpus found in the decoder (in process, fast)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from model.audio.decode import CLIP, AudioDecodeError, AudioTooLongError, decode_audio
from tests.app.audio import encode, music
from tests.hardening.corpus import flip_bits, silent_flac, wav_bytes


def test_a_truncated_flac_yields_its_intact_part() -> None:
    # Was 422: the codec rejected the cut-off last frame and the whole file was thrown away.
    flac = encode("flac", 6.0)
    decoded = decode_audio(flac[: len(flac) // 2])
    assert decoded.decoder == "pyav"
    assert 2.5 < decoded.duration_seconds < 3.1


def test_a_stream_that_changes_format_midway_is_decoded() -> None:
    # Two mp3s back to back, 44.1 kHz stereo then 22.05 kHz mono: PyAV's resampler refused the
    # second part's frames, and the soundfile fallback decoded garbage up to 7e26.
    joined = encode("mp3", 2.0) + encode("mp3", 2.0, sample_rate=22050, channels=1)
    decoded = decode_audio(joined)
    assert decoded.decoder == "pyav"
    assert decoded.duration_seconds == pytest.approx(4.0, abs=0.1)
    assert float(np.abs(decoded.samples).max()) < 1.0


def test_a_mostly_corrupt_file_is_refused() -> None:
    # Every FLAC frame carries a CRC; with 0.5 % of the bytes flipped most frames fail it.
    damaged = flip_bits(encode("flac", 6.0), 0.005, seed=3)
    with pytest.raises(AudioDecodeError, match="could not decode"):
        decode_audio(damaged)


def test_absurd_sample_values_are_clipped() -> None:
    # Float samples of 1e20 made the model's power spectrum overflow: NaN scores, then a 500.
    stereo = music(2.0, 16000, 2)
    loud = wav_bytes(np.sign(stereo).astype(np.float64) * 1e20, 16000, subtype="DOUBLE")
    decoded = decode_audio(loud)
    assert float(np.abs(decoded.samples).max()) == CLIP
    ordinary = decode_audio(wav_bytes(stereo, 16000, subtype="FLOAT"))
    assert np.allclose(ordinary.samples, stereo.mean(axis=1), atol=1e-6)  # real audio untouched


def test_decoding_work_is_bounded_by_input_samples() -> None:
    # 40 s of 8-channel 192 kHz audio is within a 60 s limit by duration, but resampling it
    # costs as much as 160 s of 192 kHz stereo: it is refused before that work is done.
    dense = silent_flac(seconds=40.0, sample_rate=192000, channels=8, block=65535)
    with pytest.raises(AudioTooLongError):
        decode_audio(dense, max_seconds=60)
    stereo = silent_flac(seconds=40.0, sample_rate=192000, channels=2, block=65535)
    assert decode_audio(stereo, max_seconds=60).duration_seconds == pytest.approx(40.0)


def test_the_silence_builder_writes_valid_flac() -> None:
    # The corpus's bombs are only meaningful if real decoders accept the stream.
    data = silent_flac(seconds=3.0, sample_rate=44100, channels=2)
    samples, rate = soundfile.read(io.BytesIO(data))
    assert rate == 44100
    assert samples.shape == (3 * 44100, 2)
    assert not samples.any()
    assert decode_audio(data).duration_seconds == pytest.approx(3.0)
