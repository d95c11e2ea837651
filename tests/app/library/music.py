"""Real music in every format the library tags support, made on the fly (no audio in git).

Excerpts of three real tracks of different styles from Debian's archive (the catalogue tests'
tracks, fetched the same way), re-encoded with PyAV (mp3, flac, opus, m4a) and libsndfile (Ogg
Vorbis), each file starting with tags of its own (title, artist, a genre) as a ripped library's
files do.
"""

from __future__ import annotations

from pathlib import Path

import av
import mutagen
import numpy as np

from model.audio.decode import decode_audio
from tests.app.audio import encode_samples
from tests.app.catalog.music import TRACKS, fetch_music

FORMATS = ("mp3", "flac", "ogg", "opus", "m4a")
STYLES = tuple(TRACKS)  # techno, orchestral, metal
START_SECONDS = 30.0
NATIVE_RATE = {"opus": 48000}  # the others keep 44.1 kHz


def real_stereo(style: str, seconds: float, rate: int) -> np.ndarray:
    """(T, 2) float32: `seconds` of a real track from START_SECONDS, at `rate` Hz."""
    samples = decode_audio(str(fetch_music() / TRACKS[style]), sample_rate=rate).samples
    first = int(START_SECONDS * rate)
    mono = samples[first : first + int(seconds * rate)]
    # The project decoder gives mono; a slightly different right channel keeps the files stereo.
    return np.stack([mono, 0.9 * mono], axis=1).astype(np.float32)


def make_file(folder: Path, style: str, fmt: str, seconds: float, *, genre: str = "Game") -> Path:
    """A real-music `fmt` file in `folder` with its own title, artist and genre tags."""
    rate = NATIVE_RATE.get(fmt, 44100)
    path = folder / f"{style}.{fmt}"
    path.write_bytes(encode_samples(real_stereo(style, seconds, rate), rate, fmt))
    own_tags(path, title=f"{style} excerpt", artist="Debian game music", genre=genre)
    return path


def own_tags(path: Path, *, title: str, artist: str, genre: str) -> None:
    """Tags a file had before the tagger saw it (with mutagen's easy interface)."""
    audio = mutagen.File(path, easy=True)
    assert audio is not None
    if audio.tags is None:
        audio.add_tags()
    audio["title"] = title
    audio["artist"] = artist
    audio["genre"] = genre
    audio.save()


def audio_packets(path: Path) -> list[bytes]:
    """The compressed audio packets of `path`, as the demuxer reads them (tags excluded)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [bytes(packet) for packet in container.demux(stream) if packet.size]


def decoded(path: Path) -> np.ndarray:
    """The project decoder's samples of `path` at its native rate (no resampling)."""
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].sample_rate
    return decode_audio(str(path), sample_rate=rate).samples
