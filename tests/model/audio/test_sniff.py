"""Container sniffing: the family each supported format starts with, and refusals."""

from __future__ import annotations

import pytest

from model.audio.sniff import SNIFF_BYTES, sniff_audio
from tests.app.audio import encode

# What each encoder of tests/app/audio.py writes first: PyAV's mp3 muxer puts an ID3v2 tag in
# front, the m4a muxer an ISO-BMFF `ftyp` box, and both Ogg codecs share the Ogg page header.
EXPECTED_FAMILY = {
    "mp3": "id3",
    "wav": "wav",
    "flac": "flac",
    "ogg": "ogg",
    "opus": "ogg",
    "m4a": "mp4",
}


@pytest.mark.parametrize(("fmt", "family"), EXPECTED_FAMILY.items())
def test_each_supported_format_is_recognised(fmt: str, family: str) -> None:
    assert sniff_audio(encode(fmt, 0.5)[:SNIFF_BYTES]) == family


@pytest.mark.parametrize(
    ("head", "family"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "wav"),
        (b"\x1a\x45\xdf\xa3\x01\x00\x00\x00", "matroska"),
        (b"\xff\xfb\x90\x64", "mpeg"),  # MPEG-1 layer III frame sync
        (b"\xff\xf1\x50\x80", "adts"),  # AAC ADTS: layer bits 00
    ],
)
def test_headers_without_an_encoder_here_are_recognised(head: bytes, family: str) -> None:
    assert sniff_audio(head) == family


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"ID",
        b"RIFF\x24\x00\x00\x00AVI LIST",  # RIFF, but a video
        b"#EXTM3U\n#EXTINF:10,\nhttp://169.254.169.254/",  # a playlist, not audio
        b"ffconcat version 1.0\nfile /etc/passwd",
        b"\x89PNG\r\n\x1a\n" + bytes(8),
        b"<!doctype html>",
        b"\xff\xd8\xff\xe0" + bytes(12),  # JPEG
    ],
)
def test_everything_else_is_refused(head: bytes) -> None:
    assert sniff_audio(head) is None
