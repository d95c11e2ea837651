"""Recognise supported audio containers from their first bytes, never from names or headers.

Only content that starts like one of the accepted formats is handed to a decoder: FFmpeg can
demux far more than audio (playlists, concat scripts, images), and none of that has any business
inside a tagging request. Anything else is answered with 415 before decoding starts.
"""

from __future__ import annotations

SNIFF_BYTES = 16
SUPPORTED_FORMATS = "mp3, wav, flac, ogg (vorbis, opus), m4a/aac, webm/matroska audio"


def sniff_audio(head: bytes) -> str | None:
    """The container family `head` (a file's first bytes) starts with, or None if unsupported."""
    if len(head) < 4:
        return None
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska / WebM
        return "matroska"
    if head[:3] == b"ID3":  # ID3v2 tag, in front of MP3 (and sometimes of AAC or FLAC)
        return "id3"
    if head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # 11-bit frame sync. Layer bits 00 mean ADTS (raw AAC), anything else MPEG audio.
        return "adts" if head[1] & 0x06 == 0 else "mpeg"
    return None
