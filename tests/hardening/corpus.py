"""Hostile uploads: a deterministic corpus of files that try to break the decoding path.

Every file is made here from a seed, nothing is downloaded or committed. Each one states the
answers that are correct for it: most are narrow (the 3-hour file must be refused as too long,
the 10 ms file must be tagged), a few damaged files may honestly go either way (a truncated mp3
still holds decodable frames) and allow 200 as well as 422.

    python -m tests.hardening.corpus --out hostile-files   # writes the files and index.json
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile

from tests.app.audio import encode, music

OK = frozenset({200})
NOT_AUDIO = frozenset({415})
BROKEN = frozenset({422})
TOO_LONG = frozenset({413})
# Damaged files whose intact parts may still decode: either answer is honest.
OK_OR_BROKEN = frozenset({200, 422})


@dataclass(frozen=True)
class HostileFile:
    """One upload of the corpus.

    Attributes:
        name: The file name sent with the upload (the service must ignore it).
        description: What the file is, for reports.
        data: The bytes.
        expect: HTTP statuses that are correct answers.
    """

    name: str
    description: str
    data: bytes
    expect: frozenset[int]


# ----- building blocks ---------------------------------------------------------------------


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def random_bytes(n: int, seed: int) -> bytes:
    return _rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def flip_bits(data: bytes, fraction: float, seed: int, keep_head: int = 64) -> bytes:
    """Flip one random bit in `fraction` of the bytes, leaving the first `keep_head` alone
    (so the file is still recognised as audio and the damage reaches the decoder)."""
    rng = _rng(seed)
    buffer = bytearray(data)
    count = max(1, round(fraction * (len(data) - keep_head)))
    positions = rng.integers(keep_head, len(data), count)
    for position, bit in zip(positions, rng.integers(0, 8, count), strict=True):
        buffer[position] ^= 1 << int(bit)
    return bytes(buffer)


def wav_bytes(
    samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16", fmt: str = "WAV"
) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def wav_header(
    *,
    channels: int,
    sample_rate: int,
    bits: int,
    data_bytes: int,
    format_tag: int = 1,
    riff_bytes: int | None = None,
) -> bytes:
    """A canonical 44-byte RIFF/WAVE header whose fields say whatever the caller wants."""
    block_align = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH",
        format_tag,
        channels,
        sample_rate,
        sample_rate * block_align & 0xFFFFFFFF,
        block_align & 0xFFFF,
        bits,
    )
    riff = riff_bytes if riff_bytes is not None else (36 + data_bytes) & 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes & 0xFFFFFFFF)
    )


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _utf8_number(n: int) -> bytes:
    """FLAC's UTF-8-like coding of the frame number."""
    if n < 0x80:
        return bytes([n])
    if n < 0x800:
        return bytes([0xC0 | n >> 6, 0x80 | n & 0x3F])
    if n < 0x10000:
        return bytes([0xE0 | n >> 12, 0x80 | n >> 6 & 0x3F, 0x80 | n & 0x3F])
    return bytes([0xF0 | n >> 18, 0x80 | n >> 12 & 0x3F, 0x80 | n >> 6 & 0x3F, 0x80 | n & 0x3F])


def silent_flac(
    *, seconds: float, sample_rate: int, channels: int, block: int = 4096, claim: int | None = None
) -> bytes:
    """A valid FLAC stream of digital silence, written frame by frame.

    Silence is what FLAC compresses best: every subframe is CONSTANT (three bytes per channel
    however long the block), so hours of audio fit in a few hundred kilobytes. That makes it
    both a realistic file (encoders emit exactly this for silence) and a decompression bomb.

    Args:
        block: Samples per frame (at most 65,535).
        claim: Total samples declared in STREAMINFO (default: the true count).
    """
    total = round(seconds * sample_rate)
    declared = total if claim is None else claim
    # STREAMINFO: block sizes, frame sizes unknown (0), rate / channels / 16 bits / total.
    info = struct.pack(">HH", block, block) + bytes(6)
    packed = (sample_rate << 44) | ((channels - 1) << 41) | (15 << 36) | (declared & (2**36 - 1))
    info += packed.to_bytes(8, "big") + bytes(16)  # MD5 0: "not computed"
    stream = bytearray(b"fLaC" + bytes([0x80, 0, 0, len(info)]) + info)
    subframes = bytes(3) * channels  # CONSTANT subframe header 0x00, value 0 (16 bits)
    number = 0
    written = 0
    while written < total:
        size = min(block, total - written)
        header = bytearray([0xFF, 0xF8])
        # Block size from the 16-bit field at the end, sample rate from STREAMINFO;
        # channels independent, sample size from STREAMINFO.
        header.append(0x70)
        header.append((channels - 1) << 4)
        header += _utf8_number(number)
        header += struct.pack(">H", size - 1)
        header.append(_crc8(bytes(header)))
        frame = bytes(header) + subframes
        stream += frame + struct.pack(">H", _crc16(frame))
        written += size
        number += 1
    return bytes(stream)


def _patch_atom_duration(data: bytes, atom: bytes, duration: int) -> bytes:
    """Overwrite the 32-bit duration of a version-0 `mvhd` or `mdhd` atom."""
    at = data.find(atom)
    if at < 0:
        raise ValueError(f"no {atom!r} atom")
    # type(4) version+flags(4) creation(4) modification(4) timescale(4) duration(4)
    offset = at + 4 + 4 + 4 + 4 + 4
    return data[:offset] + struct.pack(">I", duration) + data[offset + 4 :]


def _patch_u32_after(data: bytes, marker: bytes, skip: int, value: int) -> bytes:
    at = data.find(marker)
    if at < 0:
        raise ValueError(f"no {marker!r}")
    offset = at + len(marker) + skip
    return data[:offset] + struct.pack(">I", value) + data[offset + 4 :]


def _pyav_encode(
    samples: np.ndarray, rate: int, container_format: str, codec: str, layout: str
) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples.reshape(1, -1)), format="flt", layout=layout
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _zip_of_zeros() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("song.wav", bytes(20_000_000))
    return buffer.getvalue()


def _ogg_headers_only() -> bytes:
    """The first two Ogg pages of a Vorbis file: identification and comment/setup headers."""
    data = encode("ogg", 2.0)
    pages = [i for i in range(len(data)) if data.startswith(b"OggS", i)]
    return data[: pages[2]] if len(pages) > 2 else data[: len(data) // 10]


def _magic_then_random(magic: bytes, seed: int, n: int = 50_000) -> bytes:
    return magic + random_bytes(n, seed)


# ----- the corpus ----------------------------------------------------------------------------

_Maker = Callable[[], HostileFile]


def hostile_corpus() -> list[HostileFile]:
    """The full corpus, in a fixed order; deterministic for a given library version."""
    mp3 = encode("mp3", 6.0)
    ogg = encode("ogg", 6.0)
    opus = encode("opus", 6.0)
    flac = encode("flac", 6.0)
    m4a = encode("m4a", 6.0)
    wav = encode("wav", 6.0)
    stereo = music(3.0, 16000, 2)
    files: list[HostileFile] = []

    def add(name: str, description: str, data: bytes, expect: frozenset[int]) -> None:
        files.append(HostileFile(name, description, data, expect))

    # Nothing, or not audio at all whatever the name says.
    add("empty.mp3", "zero-length file", b"", BROKEN)
    add(
        "notes.mp3", "a text file named .mp3", b"These are my notes, not a song.\n" * 200, NOT_AUDIO
    )
    add("song.mp3", "a ZIP of 20 MB of zeros named .mp3 (zip bomb)", _zip_of_zeros(), NOT_AUDIO)
    add("page.wav", "an HTML page named .wav", b"<!doctype html><title>x</title>" * 100, NOT_AUDIO)
    add("tiny.mp3", "three bytes of an ID3 magic number", b"ID3", NOT_AUDIO)

    # Audio magic numbers followed by random bytes.
    magics = {
        "wav": b"RIFF\xff\xff\xff\x7fWAVE",
        "flac": b"fLaC",
        "ogg": b"OggS",
        "mp3": b"\xff\xfb\x90\x64",
        "id3": b"ID3\x04\x00\x00\x00\x00\x00\x00",
        "m4a": b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00",
        "webm": b"\x1a\x45\xdf\xa3",
        "aac": b"\xff\xf1\x50\x80",
    }
    for seed, (name, magic) in enumerate(magics.items()):
        expect = OK_OR_BROKEN if name in ("mp3", "aac") else BROKEN
        add(
            f"random.{name}",
            f"{name} magic number, then 50 kB of random bytes",
            _magic_then_random(magic, seed),
            expect,
        )

    # Truncated real files.
    add("truncated-head.mp3", "first 200 bytes of an mp3", mp3[:200], BROKEN)
    add("truncated.mp3", "first half of an mp3", mp3[: len(mp3) // 2], OK)
    add("truncated.ogg", "first half of an Ogg Vorbis file", ogg[: len(ogg) // 2], OK)
    add("truncated.opus", "first third of an Ogg Opus file", opus[: len(opus) // 3], OK)
    add("truncated.flac", "first half of a FLAC file", flac[: len(flac) // 2], OK)
    # mp4 from this muxer puts the index (moov) at the end: without it nothing decodes.
    add("truncated.m4a", "first half of an m4a (index lost)", m4a[: len(m4a) // 2], BROKEN)
    add(
        "truncated.wav",
        "first half of a WAV whose header claims the whole",
        wav[: len(wav) // 2],
        OK,
    )
    add(
        "header-only.wav",
        "a WAV header claiming 1 s and no samples",
        wav_header(channels=1, sample_rate=16000, bits=16, data_bytes=32000),
        BROKEN,
    )

    # Bit flips after the header: the decoder meets damage mid-stream.
    for seed, (name, data) in enumerate(
        {"mp3": mp3, "ogg": ogg, "opus": opus, "flac": flac, "m4a": m4a, "wav": wav}.items()
    ):
        add(
            f"bitflip.{name}",
            f"{name} with 0.5 % of its bytes bit-flipped",
            flip_bits(data, 0.005, 100 + seed),
            OK_OR_BROKEN,
        )

    # Headers that lie about the duration.
    data = wav_pcm16_bytes(2.0)
    add(
        "claims-37h.wav",
        "WAV header claiming 37 hours, 2 s of samples",
        wav_header(
            channels=1, sample_rate=16000, bits=16, data_bytes=0xFFFFFFFF, riff_bytes=0xFFFFFFFF
        )
        + data[44:],
        OK,
    )
    add(
        "claims-hours.flac",
        "FLAC STREAMINFO claiming 2^36 samples, 2 s of silence",
        silent_flac(seconds=2.0, sample_rate=44100, channels=2, claim=2**36 - 1),
        OK,
    )
    add(
        "claims-hours.m4a",
        "m4a whose movie and track headers claim 24 days",
        _patch_atom_duration(_patch_atom_duration(m4a, b"mvhd", 0x7FFFFFFF), b"mdhd", 0x7FFFFFFF),
        OK,
    )
    add(
        "claims-frames.mp3",
        "mp3 whose Info header claims 2^31 frames",
        _patch_u32_after(mp3, b"Info", 4, 0x7FFFFFFF),
        OK,
    )
    add(
        "huge-id3.mp3",
        "an ID3 tag claiming 256 MB, then nothing",
        b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + bytes(1000),
        BROKEN,
    )

    # Long, short, wide, slow and fast audio.
    add(
        "silence-3h.flac",
        "three hours of digital silence (44.1 kHz stereo FLAC, 1.7 MB): over the 2 h limit",
        silent_flac(seconds=10800.0, sample_rate=44100, channels=2),
        TOO_LONG,
    )
    add(
        "bomb.flac",
        "FLAC bomb: 2 h of 8-channel 192 kHz silence in under 1 MB (44 GB as float)",
        silent_flac(seconds=7200.0, sample_rate=192000, channels=8, block=65535),
        TOO_LONG,
    )
    add("10ms.wav", "10 ms of audio", wav_bytes(music(0.01, 16000, 1), 16000), OK)
    add("1-sample.wav", "a single sample", wav_bytes(np.array([0.5], dtype=np.float32), 16000), OK)
    add(
        "8ch.wav",
        "8-channel 48 kHz WAV",
        wav_bytes(np.tile(music(3.0, 48000, 1), (1, 8)), 48000),
        OK,
    )
    add(
        "8ch.flac",
        "8-channel 44.1 kHz FLAC",
        wav_bytes(np.tile(music(3.0, 44100, 1), (1, 8)), 44100, fmt="FLAC"),
        OK,
    )
    add(
        "8khz.mp3",
        "8 kHz mono mp3",
        _pyav_encode(music(4.0, 8000, 1)[:, 0], 8000, "mp3", "libmp3lame", "mono"),
        OK,
    )
    add(
        "192khz.flac",
        "192 kHz 24-bit stereo FLAC",
        wav_bytes(music(3.0, 192000, 2), 192000, subtype="PCM_24", fmt="FLAC"),
        OK,
    )
    add(
        "192khz.wav",
        "192 kHz 32-bit float WAV",
        wav_bytes(music(3.0, 192000, 2), 192000, subtype="FLOAT"),
        OK,
    )
    add(
        "1hz.wav",
        "WAV at 1 Hz: 8,000 samples claim 2.2 hours",
        wav_header(channels=1, sample_rate=1, bits=16, data_bytes=16000) + bytes(16000),
        TOO_LONG,
    )
    add(
        "rate-4g.wav",
        "WAV claiming 4,294,967,295 samples per second",
        wav_header(channels=1, sample_rate=0xFFFFFFFF, bits=16, data_bytes=32000)
        + random_bytes(32000, 7),
        frozenset({200, 413, 422}),
    )
    add(
        "rate-0.wav",
        "WAV claiming 0 samples per second",
        wav_header(channels=1, sample_rate=0, bits=16, data_bytes=32000) + bytes(32000),
        BROKEN,
    )
    add(
        "channels-0.wav",
        "WAV claiming 0 channels",
        wav_header(channels=0, sample_rate=16000, bits=16, data_bytes=32000) + bytes(32000),
        BROKEN,
    )
    add(
        "channels-65535.wav",
        "WAV claiming 65,535 channels",
        wav_header(channels=65535, sample_rate=16000, bits=16, data_bytes=65535 * 4)
        + random_bytes(65535 * 4, 8),
        frozenset({200, 422}),
    )
    add(
        "bits-0.wav",
        "WAV claiming 0 bits per sample",
        wav_header(channels=1, sample_rate=16000, bits=0, data_bytes=32000) + bytes(32000),
        BROKEN,
    )

    # Non-finite and out-of-range samples.
    nasty = stereo.copy()
    nasty[::97, 0] = np.nan
    nasty[::89, 1] = np.inf
    nasty[::83, 0] = -np.inf
    add(
        "nan-inf.wav",
        "float WAV with NaN, +inf and -inf samples",
        wav_bytes(nasty, 16000, subtype="FLOAT"),
        OK,
    )
    add(
        "all-nan.wav",
        "float WAV of nothing but NaN",
        wav_bytes(np.full((16000, 1), np.nan, dtype=np.float32), 16000, subtype="FLOAT"),
        OK,
    )
    add(
        "loud.wav",
        "double WAV with samples of ±1e20 (finite, but their power overflows)",
        wav_bytes(np.sign(stereo).astype(np.float64) * 1e20, 16000, subtype="DOUBLE"),
        OK,
    )
    add(
        "huge-values.wav",
        "float WAV with samples of ±3e38",
        wav_bytes(np.sign(stereo) * 3e38, 16000, subtype="FLOAT"),
        OK,
    )
    add(
        "huge-values-64.wav",
        "double WAV with samples of ±1e300",
        wav_bytes(np.sign(stereo).astype(np.float64) * 1e300, 16000, subtype="DOUBLE"),
        OK,
    )
    add(
        "dc-full-scale.wav",
        "full-scale DC offset",
        wav_bytes(np.ones((48000, 1), dtype=np.float32), 16000),
        OK,
    )

    # Containers abused.
    add(
        "headers-only.ogg",
        "Ogg Vorbis headers without a single audio page",
        _ogg_headers_only(),
        frozenset({200, 422}),
    )
    add(
        "polyglot.wav",
        "WAV header in front of mp3 data",
        wav_header(channels=2, sample_rate=44100, bits=16, data_bytes=len(mp3)) + mp3,
        OK_OR_BROKEN,
    )
    add(
        "playlist.mp3",
        "ID3 tag in front of an HLS playlist pointing at a loopback URL",
        b"ID3\x03\x00\x00\x00\x00\x00\x00#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/x.mp3\n#EXT-X-ENDLIST\n",
        BROKEN,
    )
    add(
        "concat.mp3",
        "ID3 tag in front of an ffconcat script naming a local file",
        b"ID3\x03\x00\x00\x00\x00\x00\x00ffconcat version 1.0\nfile '/etc/passwd'\n",
        BROKEN,
    )
    return files


def wav_pcm16_bytes(seconds: float) -> bytes:
    return wav_bytes(music(seconds, 16000, 1), 16000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory to write the files to")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    index = []
    for item in hostile_corpus():
        (args.out / item.name).write_bytes(item.data)
        index.append(
            {
                "name": item.name,
                "bytes": len(item.data),
                "description": item.description,
                "expect": sorted(item.expect),
            }
        )
    (args.out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    print(f"wrote {len(index)} files to {args.out}")


if __name__ == "__main__":
    main()
