"""The General MIDI soundfonts renders are played through, and fetching the Debian ones.

TimGM6mb ships inside `pretty_midi`; FluidR3_GM and MuseScore_General come from their Debian
packages, fetched by the render step itself into `<dest>/soundfonts/` (`apt-get download`, then
only the .sf2 and the copyright file are streamed out of the .deb; the .deb is not kept). All
three are plain sf2 files that tinysoundfont loads (the Debian MuseScore package leaves out the
upstream sf3 on purpose, so nothing here needs Vorbis-compressed samples).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from training.debian_archive import download_deb, extract_selected

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Soundfont:
    """One GM soundfont.

    Attributes:
        name: What manifests call it.
        licence: Its licence, as its Debian copyright file states it.
        package: The Debian package it comes from, or None for the one inside pretty_midi.
        member: Path of the .sf2 inside the package.
        copyright: Path of the package's copyright file, kept beside the .sf2.
    """

    name: str
    licence: str
    package: str | None = None
    member: str = ""
    copyright: str = ""


TIMGM6MB = Soundfont(
    "TimGM6mb",
    "GPL-2 (Tim Brechbill, David Bolton; Debian timgm6mb-soundfont; the copy inside pretty_midi)",
)
FLUIDR3 = Soundfont(
    "FluidR3_GM",
    "MIT (Frank Wen; Debian fluid-soundfont-gm)",
    "fluid-soundfont-gm",
    "usr/share/sounds/sf2/FluidR3_GM.sf2",
    "usr/share/doc/fluid-soundfont-gm/copyright",
)
MUSESCORE = Soundfont(
    "MuseScore_General",
    "MIT, parts CC0 or public domain (S. Christian Collins and others; "
    "Debian musescore-general-soundfont-lossless)",
    "musescore-general-soundfont-lossless",
    "usr/share/sounds/sf2/MuseScore_General_Full.sf2",
    "usr/share/doc/musescore-general-soundfont-lossless/copyright",
)
SOUNDFONTS: tuple[Soundfont, ...] = (TIMGM6MB, FLUIDR3, MUSESCORE)
SOUNDFONT_BY_NAME: dict[str, Soundfont] = {sf.name: sf for sf in SOUNDFONTS}


def bundled_soundfont_path() -> Path:
    """The TimGM6mb soundfont inside the installed `pretty_midi` package (which is not imported)."""
    spec = importlib.util.find_spec("pretty_midi")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pretty_midi is not installed: it carries the TimGM6mb soundfont")
    path = Path(next(iter(spec.submodule_search_locations))) / "TimGM6mb.sf2"
    if not path.is_file():
        raise FileNotFoundError(f"no TimGM6mb.sf2 in the pretty_midi package at {path.parent}")
    return path


def cached_path(soundfont: Soundfont, cache: Path) -> Path:
    """Where `soundfont` lies once fetched into `cache` (TimGM6mb: inside pretty_midi)."""
    if soundfont.package is None:
        return bundled_soundfont_path()
    return cache / soundfont.package / soundfont.member


def fetch_soundfont(soundfont: Soundfont, cache: Path) -> Path:
    """The .sf2 of `soundfont`, fetched from Debian into `cache` unless it is there already."""
    path = cached_path(soundfont, cache)
    if path.is_file() or soundfont.package is None:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s from the Debian package %s", soundfont.name, soundfont.package)
    root = cache / soundfont.package
    with tempfile.TemporaryDirectory(dir=cache, prefix="download-") as workdir:
        # An empty kept-deb folder: the .deb (up to 330 MB) lives only as long as this block.
        deb = download_deb(soundfont.package, Path(workdir), Path(workdir) / "kept")
        partial = Path(workdir) / "tree"
        extraction = extract_selected(
            deb, [soundfont.member, soundfont.copyright], partial, lambda _path: False
        )
        missing = {soundfont.member, soundfont.copyright} - set(extraction.written)
        if missing:
            raise RuntimeError(f"{soundfont.package} has no {', '.join(sorted(missing))}")
        # Moved into place only when complete, so an interrupted fetch is redone, not trusted.
        for member in (soundfont.copyright, soundfont.member):
            (root / member).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(partial / member, root / member)
    return path
