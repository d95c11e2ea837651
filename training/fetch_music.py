"""Fetch real, freely licensed music from Debian packages into a local cache.

Why: the tagger needs real recordings to distil the musicnn teacher on and to test against, and
the only registries reachable here are PyPI, npm and Debian. About 26.7 h of DFSG-free music
ship in Debian packages (game soundtracks, GCompris' world-music and instrument clips, a few
choirs; see data-sources.md §3 and more-data-sources.md). Audio is never committed: it lands in
``data/music`` (git-ignored) and is re-fetched on demand.

For each package this runs ``apt-get download PKG`` and streams ``dpkg-deb --fsys-tarfile``,
keeping only the music files and ``/usr/share/doc/PKG/copyright`` (the attribution the licences
require); the rest of the package (game data, often hundreds of MB) is never written to disk and
the ``.deb`` is deleted unless ``--keep-debs``. Special cases:

* some packages keep their tracks inside archives, read without unpacking the rest: zips
  (nexuiz-music's ``music.pk3``, 0ad-data's 3 GB ``public.zip``, ufoai-music's ``0music.pk3``)
  and Qt resource files (gcompris-qt-data's ``.rcc``, see ``training.qt_rcc``); a credits file
  inside the archive (GCompris' ``README``) gives per-clip licences where it names the clip.
* the Frets on Fire song packs ship stems per song (``song.ogg``, ``guitar.ogg``, sometimes
  ``rhythm.ogg``); they are summed into one ``mix.flac`` per song, peak-normalised only if the
  sum clips.
* the packages added for the v2 model drop tracks under 5 s (sound effects, jingles) unless
  they are recorded voices. Audio is kept in its own format (ogg/opus/mp3/flac/wav), never
  transcoded.

Output: ``DEST/PKG/...`` audio files, ``DEST/PKG/copyright``, ``DEST/PKG/manifest.jsonl`` (written
last, so its presence marks the package complete and reruns skip it) and ``DEST/manifest.jsonl``,
the concatenation over all complete packages. One manifest line per track: ``package``,
``version``, ``path`` (inside the package), ``local_path`` (relative to DEST), ``duration_s``,
``sample_rate``, ``channels``, ``licence``, ``licence_source``, ``copyright`` (holder, when
debian/copyright or the credits file names one), ``origin`` (upstream URL from a credits file),
for mixes ``stems``, and ``content: "voice"`` with a ``content_note`` for tracks that hold a
recorded voice or choir (``PackageSpec.voice``; set on every manifest rebuild).

Usage (as root, or anyone who can run ``apt-get download``)::

    python -m training fetch-music                        # all packages into data/music
    python -m training fetch-music --dest data/music-sample --packages asc-music xmoto-data
    python -m training fetch-music --apt-update           # refresh apt lists first
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

from training.debian_archive import AUDIO_SUFFIXES, download_deb, extract_selected, run
from training.debian_licences import Credit, Dep5Paragraph, licence_for, parse_credits, parse_dep5
from training.qt_rcc import RccEntry, RccFile

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = REPO_ROOT / "data" / "music"
STEM_NAMES = ("song.ogg", "guitar.ogg", "rhythm.ogg", "drums.ogg")
MANIFEST = "manifest.jsonl"
ARCHIVE_KINDS = ("zip", "rcc")


@dataclass(frozen=True)
class PackageSpec:
    """Where a package keeps its music and what licence applies if the package doesn't say.

    ``base`` is stripped from in-package paths to form local paths; ``subdirs`` (under ``base``)
    are searched recursively for audio files. ``kind`` is ``files``, ``zip`` (tracks inside zip
    archives, ``.pk3`` included, at ``base``/``subdirs``), ``rcc`` (the same inside Qt resource
    files) or ``stems`` (one folder per song with stems to mix). For ``zip`` and ``rcc``,
    ``inner`` are the member prefixes that hold music and ``inner_base`` is stripped from member
    names to form local paths; ``credits`` names a per-folder file inside the archive that gives
    licences per file (see ``debian_licences.parse_credits``).

    ``min_duration_s`` drops shorter tracks (sound effects, jingles) unless they are voices;
    ``include`` and ``exclude`` are globs on the local path (relative to the package folder)
    to keep and never to keep (e.g. a clip under a non-free licence); ``voice`` maps globs on
    the local path to a note saying which recorded voice or choir the track holds (manifest
    ``content: "voice"``).
    """

    base: str
    licence: str
    subdirs: tuple[str, ...] = ("",)
    kind: str = "files"
    inner: tuple[str, ...] = ()
    inner_base: str = ""
    credits: str = ""
    min_duration_s: float = 0.0
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    voice: tuple[tuple[str, str], ...] = ()


FOF = "usr/share/games/fretsonfire/data/songs"
GCOMPRIS = "gcompris/src/activities"

# Kept for an independent evaluation: never fetched here, and refused by every script that picks
# music for training, validation, calibration, tuning or evaluation.
RESERVED_PACKAGES = frozenset(
    {
        "hedgewars-data",
        "colobot-common-sounds",
        "drascula-music",
        "openclonk-data",
        "hyperrogue-music",
        "planetblupi-music-ogg",
        "lugaru-data",
    }
)

PACKAGES: dict[str, PackageSpec] = {
    "wesnoth-1.16-music": PackageSpec(
        "usr/share/games/wesnoth/1.16/data/core/music",
        "GPL-2+",
        voice=(("elf-land.ogg", "choir throughout (27 s)"),),
    ),
    "warzone2100-music": PackageSpec("usr/share/games/warzone2100/music", "GPL-2+"),
    "nexuiz-music": PackageSpec(
        "usr/share/games/nexuiz/data",
        "GPL-2+",
        ("music.pk3",),
        "zip",
        inner=("sound/cdtracks/",),
        inner_base="sound/cdtracks/",
    ),
    "singularity-music": PackageSpec(
        "usr/share/games/singularity/music", "CC-BY-SA-3.0 (Max McCracken)"
    ),
    "naev-data": PackageSpec(
        "usr/share/naev/dat/snd/music", "GPL-2+/GPL-3/CC-BY-3.0/CC-BY-SA/PD per file"
    ),
    "widelands-data": PackageSpec(
        "usr/share/games/widelands/data/music", "GPL-2+ (3 files CC-BY-SA-3.0)"
    ),
    "supertux-data": PackageSpec("usr/share/games/supertux2/music", "GPL-2+"),
    "supertuxkart-data": PackageSpec(
        "usr/share/games/supertuxkart/data/music", "CC-BY-SA-3.0/4.0, CC-BY, CC0 per file"
    ),
    "freedroidrpg-data": PackageSpec("usr/share/freedroidrpg/data/sound/music", "GPL-2+"),
    "redeclipse-data": PackageSpec("usr/share/games/redeclipse/data/sounds/music", "CC-BY-SA-3.0"),
    "asc-music": PackageSpec("usr/share/games/asc/music", "GPL-2+"),
    "xmoto-data": PackageSpec("usr/share/games/xmoto/Textures/Musics", "GPL-2+"),
    "extremetuxracer-data": PackageSpec("usr/share/games/etr/music", "GPL-2+ (mixed)"),
    "fretsonfire-songs-muldjord": PackageSpec(
        f"{FOF}/muldjord", "CC-BY-SA-3.0 (El Senator / Muldjord)", kind="stems"
    ),
    "fretsonfire-songs-sectoid": PackageSpec(
        f"{FOF}/sectoid", "MIT-style (Carlos Viola Iborra)", kind="stems"
    ),
    "scratch": PackageSpec(
        "usr/share/scratch/Media/Sounds",
        "CC-BY-SA-3.0 (MIT Media Lab)",
        ("Vocals", "Music Loops"),
        voice=(
            ("Vocals/BeatBox*", "beatbox (vocal percussion, no words)"),
            ("Vocals/*", "sung phrase (Scratch's Vocals folder)"),
        ),
    ),
    # Added for the default model v2 (issue 16). Tracks under 5 s are effects or jingles.
    "0ad-data": PackageSpec(
        "usr/share/games/0ad/mods/public",
        "CC-BY-SA-3.0 (Wildfire Games)",
        ("public.zip",),
        "zip",
        inner=("audio/music/",),
        inner_base="audio/music/",
        min_duration_s=5.0,
    ),
    "ufoai-music": PackageSpec(
        "usr/share/games/ufoai/base",
        "GPL-2+ / CC-BY-SA / PD per file",
        ("0music.pk3",),
        "zip",
        inner=("music/",),
        inner_base="music/",
        min_duration_s=5.0,
    ),
    "gcompris-qt-data": PackageSpec(
        "usr/share/gcompris-qt/rcc",
        "GPL-3+",
        ("explore_world_music.rcc", "instruments.rcc"),
        "rcc",
        inner=(
            f"{GCOMPRIS}/explore_world_music/resource/music/",
            f"{GCOMPRIS}/instruments/resource/",
        ),
        inner_base=f"{GCOMPRIS}/",
        credits="README",
        min_duration_s=5.0,
        # Its README: freesound's "Creative Commons Sampling Plus 1.0", not a free licence.
        exclude=("instruments/resource/drum_kit.ogg",),
        # middleeast.ogg credits the singer Safiye Ayla, but MTT_musicnn hears no voice in this
        # 28 s excerpt (vocal 0.02, no vocal 0.05): not marked.
        voice=(
            (
                "explore_world_music/resource/music/italy.ogg",
                "male opera singer (Enrico Caruso, Handel's 'Ombra mai fu', per the README)",
            ),
        ),
    ),
    "performous": PackageSpec(
        "usr/share/games/performous",
        "GPL-2+",
        ("themes", "sounds"),
        min_duration_s=5.0,
        voice=(("themes/default/practice.ogg", "choir (the singing-practice theme)"),),
    ),
    "lmms-common": PackageSpec(
        "usr/share/lmms/samples/stringsnpads",
        "GPL-2+",
        include=("chorus0*.ogg",),
        voice=(("chorus0*.ogg", "sampled chant (a few voices)"),),
    ),
    # Its soundtrack: 15 tracks, 0.71 h (content/audio/sounds beside it is effects and ambiences).
    "unknown-horizons": PackageSpec(
        "usr/share/unknown-horizons/content/audio/music", "CC-BY-SA-3.0", min_duration_s=5.0
    ),
    # music/ingame and music/menu (13 tracks, 0.45 h); the sound/ folder is effects and voices.
    "warmux-data": PackageSpec("usr/share/games/warmux/music", "GPL-2+", min_duration_s=5.0),
    "pushover-data": PackageSpec(
        "usr/share/pushover/themes", "GPL-3+ (Roberto Lorenz)", min_duration_s=5.0
    ),
    # The menu music and one track per faction (9 tracks, 0.52 h); tilesets/*/sounds are weather
    # and forest ambiences, not music.
    "megaglest-data": PackageSpec(
        "usr/share/games/megaglest",
        "CC-BY-SA-3.0",
        ("data/core/menu/music", "techs/megapack/factions"),
        min_duration_s=5.0,
        include=("data/core/menu/music/*", "techs/megapack/factions/*/music/*"),
    ),
    # Added for the default model v3 (issue 32). Five tracks of music on hold (electronic,
    # lounge), 0.31 h; debian/copyright (not machine-readable) grants CC-BY-SA-3.0 by the
    # authors' permission. Recorded at 8 kHz, so the teachers hear nothing above 4 kHz: train
    # split only, never a measure of the student.
    "asterisk-moh-opsound-wav": PackageSpec(
        "usr/share/asterisk/moh", "CC-BY-SA-3.0 (Macroform, Manolo Camp, Reno Project)"
    ),
    # LinCity-NG's three tracks (a blues among them), about 9 min; debian/copyright: GPL-2+.
    "lincity-ng-data": PackageSpec(
        "usr/share/games/lincity-ng/music", "GPL-2+", min_duration_s=5.0
    ),
}
assert not RESERVED_PACKAGES & PACKAGES.keys(), "a reserved package is among the fetched ones"


# --------------------------------------------------------------------------- audio


def audio_info(path: Path) -> tuple[float, int, int]:
    """(duration in s, sample rate, channels), from the header via libsndfile, else PyAV."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate, int(info.samplerate), int(info.channels)
    except (sf.LibsndfileError, RuntimeError):
        import av

        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            duration = float(container.duration or 0) / 1_000_000
            return duration, int(stream.rate or 0), int(stream.channels or 0)


def mix_stems(stems: Sequence[Path], out: Path) -> None:
    """Sum stems sample by sample (zero-padding the shorter ones) and write a 16-bit FLAC.

    Frets on Fire plays the stems together, so their sum is the song as heard; it is scaled
    down only if it would clip, to keep the original balance and loudness otherwise.
    """
    signals: list[npt.NDArray[np.float32]] = []
    rates: set[int] = set()
    for stem in stems:
        data, rate = sf.read(str(stem), dtype="float32", always_2d=True)
        signals.append(data)
        rates.add(int(rate))
    if len(rates) != 1:
        raise ValueError(f"stems {[s.name for s in stems]} have different sample rates {rates}")
    channels = max(s.shape[1] for s in signals)
    total = np.zeros((max(len(s) for s in signals), channels), dtype=np.float32)
    for s in signals:
        total[: len(s)] += s if s.shape[1] == channels else np.repeat(s, channels, axis=1)
    peak = float(np.max(np.abs(total))) if total.size else 0.0
    if peak > 1.0:
        total /= peak / 0.999
    sf.write(str(out), total, rates.pop(), format="FLAC", subtype="PCM_16")


# --------------------------------------------------------------------------- per package


def _package_paths(spec: PackageSpec) -> list[str]:
    return [str(PurePosixPath(spec.base) / sub) if sub else spec.base for sub in spec.subdirs]


def is_kept(spec: PackageSpec, local: str) -> bool:
    """Whether ``include``/``exclude`` keep the file at ``local`` (relative to the package)."""
    included = any(fnmatchcase(local, glob) for glob in spec.include)
    return included and not any(fnmatchcase(local, glob) for glob in spec.exclude)


def voice_note(spec: PackageSpec, local: str) -> str | None:
    """What recorded voice the track at ``local`` holds, or None if it has none we know of."""
    return next((note for glob, note in spec.voice if fnmatchcase(local, glob)), None)


def _selector(spec: PackageSpec) -> Callable[[str], bool]:
    roots = _package_paths(spec)

    def select(path: str) -> bool:
        if spec.kind in ARCHIVE_KINDS:
            return path in roots
        if PurePosixPath(path).suffix.lower() not in AUDIO_SUFFIXES:
            return False
        if spec.kind == "stems" and PurePosixPath(path).name not in STEM_NAMES:
            return False
        if not any(path.startswith(root + "/") for root in roots):
            return False
        return is_kept(spec, PurePosixPath(path).relative_to(spec.base).as_posix())

    return select


def select_members(spec: PackageSpec, names: Iterable[str]) -> dict[str, str]:
    """Archive members that hold music, mapped to their local path (relative to the package).

    A member is kept if it is audio, lies under one of ``spec.inner`` and passes the
    include/exclude globs; its local path is its name without ``spec.inner_base``.
    """
    chosen: dict[str, str] = {}
    for name in sorted(names):
        if PurePosixPath(name).suffix.lower() not in AUDIO_SUFFIXES:
            continue
        if not any(name.startswith(prefix) for prefix in spec.inner):
            continue
        local = name.removeprefix(spec.inner_base)
        if is_kept(spec, local):
            chosen[name] = local
    return chosen


class _Archive:
    """Members of a zip (``.pk3``) or Qt ``.rcc`` archive, by name."""

    def __init__(self, kind: str, path: Path) -> None:
        self._zip = zipfile.ZipFile(path) if kind == "zip" else None
        self._rcc: dict[str, tuple[RccFile, RccEntry]] = {}
        if kind == "rcc":
            rcc = RccFile.open(path)
            self._rcc = {entry.path: (rcc, entry) for entry in rcc.entries()}

    def names(self) -> list[str]:
        return self._zip.namelist() if self._zip is not None else list(self._rcc)

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        rcc, entry = self._rcc[name]
        return rcc.read(entry)

    def copy(self, name: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self._zip is None:
            dest.write_bytes(self.read(name))
            return
        with self._zip.open(name) as src, dest.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


@dataclass(frozen=True)
class _Track:
    inner_path: str  # path in the package; "archive:member" for archive members
    local: Path
    stems: tuple[str, ...] = ()
    credit: Credit | None = None
    credit_source: str = ""


def fetch_package(package: str, dest: Path, keep_debs: bool) -> list[dict[str, Any]]:
    """Fetch one package into ``dest/package`` and return its manifest records.

    Everything of a previous, interrupted attempt is removed first and the package manifest is
    written last, so a rerun either skips a complete package or redoes it from scratch.
    """
    if package in RESERVED_PACKAGES:
        raise ValueError(f"{package} is reserved for an independent evaluation")
    spec = PACKAGES[package]
    out_dir = dest / package
    work = dest / ".work" / package
    for stale in (out_dir, work):
        if stale.exists():
            shutil.rmtree(stale)
    work.mkdir(parents=True)
    deb_cache = dest / "debs"
    try:
        deb = download_deb(package, work, deb_cache)
        version = run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
        copyright_path = f"usr/share/doc/{package}/copyright"
        root = work / "root"
        extraction = extract_selected(deb, [copyright_path], root, _selector(spec))
        if keep_debs and deb.parent != deb_cache:
            deb_cache.mkdir(parents=True, exist_ok=True)
            shutil.move(str(deb), deb_cache / deb.name)
        elif not keep_debs:
            deb.unlink()

        out_dir.mkdir(parents=True)
        dep5: list[Dep5Paragraph] | None = None
        if (root / copyright_path).is_file():
            shutil.copyfile(root / copyright_path, out_dir / "copyright")
            dep5 = parse_dep5((root / copyright_path).read_text(encoding="utf-8", errors="replace"))
        music = sorted(p for p in extraction.written if p != copyright_path)
        if not music:
            raise RuntimeError(
                f"{package} {version}: no music under {_package_paths(spec)}; audio files in the "
                f"package: {extraction.seen_audio[:10]}"
            )
        records: list[dict[str, Any]] = []
        for track in _place_tracks(spec, root, out_dir, music):
            duration, rate, channels = audio_info(track.local)
            local = track.local.relative_to(out_dir).as_posix()
            if duration < spec.min_duration_s and voice_note(spec, local) is None:
                track.local.unlink()  # a sound effect or jingle, not music
                continue
            licence, holder, source = _licence(spec, track, dep5, out_dir)
            record: dict[str, Any] = {
                "package": package,
                "version": version,
                "path": "/" + track.inner_path,
                "local_path": track.local.relative_to(dest).as_posix(),
                "duration_s": round(duration, 3),
                "sample_rate": rate,
                "channels": channels,
                "licence": licence,
                "licence_source": source,
            }
            if holder:
                record["copyright"] = holder
            if track.credit is not None and track.credit.origin:
                record["origin"] = track.credit.origin
            if track.stems:
                record["stems"] = list(track.stems)
            records.append(annotate(record))
        if not records:
            raise RuntimeError(f"{package} {version}: every track is under {spec.min_duration_s} s")
        _write_jsonl(out_dir / MANIFEST, records)  # last: marks the package complete
        return records
    except BaseException:
        if out_dir.exists():
            shutil.rmtree(out_dir)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _licence(
    spec: PackageSpec, track: _Track, dep5: list[Dep5Paragraph] | None, out_dir: Path
) -> tuple[str, str, str]:
    """(licence, holder, where it was read) for one track: the archive's own credits file,
    else debian/copyright, else the licence recorded in ``PACKAGES``."""
    if track.credit is not None:
        return track.credit.licence, track.credit.holder, track.credit_source
    licence, holder = spec.licence, ""
    source = "data-sources.md §3 (copyright not machine-readable)"
    if dep5 is None and not (out_dir / "copyright").is_file():
        source = "data-sources.md §3 (package has no copyright file)"
    elif dep5 is not None:
        match = licence_for(track.inner_path.replace(":", "/"), dep5)
        if match is None:
            source = "data-sources.md §3 (no debian/copyright paragraph matches)"
        elif not match.licence:
            source = f"data-sources.md §3 ({match.source} gives no licence)"
            holder = match.holder
        else:
            licence, holder, source = match.licence, match.holder, match.source
    return licence, holder, source


def _place_tracks(spec: PackageSpec, root: Path, out_dir: Path, music: list[str]) -> list[_Track]:
    """Move extracted audio into ``out_dir`` and describe each track."""
    tracks: list[_Track] = []
    if spec.kind in ARCHIVE_KINDS:
        for archive_path in music:
            archive = _Archive(spec.kind, root / archive_path)
            try:
                names = archive.names()
                chosen = select_members(spec, names)
                if not chosen:
                    audio = [n for n in names if PurePosixPath(n).suffix.lower() in AUDIO_SUFFIXES]
                    raise RuntimeError(
                        f"{archive_path}: no music under {list(spec.inner)}; audio members: "
                        f"{audio[:10]}"
                    )
                credits = _archive_credits(spec, archive, chosen, set(names))
                for name, member_local in chosen.items():
                    archive.copy(name, out_dir / member_local)
                    credit, source = credits.get(name, (None, ""))
                    track = _Track(
                        f"{archive_path}:{name}", out_dir / member_local, (), credit, source
                    )
                    tracks.append(track)
            finally:
                archive.close()
            (root / archive_path).unlink()  # public.zip is 3 GB: free it before the next one
        return tracks
    if spec.kind == "stems":
        songs: dict[str, list[str]] = {}
        for path in music:
            songs.setdefault(str(PurePosixPath(path).parent), []).append(path)
        for song_dir, stems in sorted(songs.items()):
            ordered = sorted(stems, key=lambda p: STEM_NAMES.index(PurePosixPath(p).name))
            local = out_dir / PurePosixPath(song_dir).relative_to(spec.base) / "mix.flac"
            local.parent.mkdir(parents=True, exist_ok=True)
            mix_stems([root / p for p in ordered], local)
            tracks.append(_Track(song_dir, local, tuple(PurePosixPath(p).name for p in ordered)))
        return tracks
    for path in music:
        local = out_dir / PurePosixPath(path).relative_to(spec.base)
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(root / path), local)
        tracks.append(_Track(path, local))
    return tracks


def _archive_credits(
    spec: PackageSpec, archive: _Archive, chosen: dict[str, str], names: set[str]
) -> dict[str, tuple[Credit, str]]:
    """Per-member credits from the ``spec.credits`` file beside each member, if it lists it."""
    if not spec.credits:
        return {}
    found: dict[str, tuple[Credit, str]] = {}
    parsed: dict[str, dict[str, Credit]] = {}
    for name in chosen:
        folder = PurePosixPath(name).parent
        credits_name = str(folder / spec.credits)
        if credits_name not in names:
            continue
        if credits_name not in parsed:
            text = archive.read(credits_name).decode("utf-8", errors="replace")
            parsed[credits_name] = parse_credits(text)
        credit = parsed[credits_name].get(PurePosixPath(name).name)
        if credit is not None and credit.licence:
            found[name] = (credit, f"{spec.credits} beside it in the archive ({credits_name})")
    return found


def annotate(record: dict[str, Any]) -> dict[str, Any]:
    """Set ``content: "voice"`` and ``content_note`` on a record whose track holds a recorded
    voice (per ``PACKAGES[...].voice``), and drop them otherwise.

    Done on every manifest rebuild, so manifests fetched before a note was added get it too.
    """
    record.pop("content", None)
    record.pop("content_note", None)
    spec = PACKAGES.get(str(record["package"]))
    if spec is not None:
        local = PurePosixPath(str(record["local_path"])).relative_to(str(record["package"]))
        note = voice_note(spec, local.as_posix())
        if note is not None:
            record["content"] = "voice"
            record["content_note"] = note
    return record


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half manifest."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)


def rebuild_manifest(dest: Path) -> list[dict[str, Any]]:
    """Concatenate the per-package manifests of every complete package, in PACKAGES order."""
    records: list[dict[str, Any]] = []
    for package in PACKAGES:
        part = dest / package / MANIFEST
        if part.is_file():
            with part.open(encoding="utf-8") as f:
                records.extend(annotate(json.loads(line)) for line in f if line.strip())
    _write_jsonl(dest / MANIFEST, records)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Fetch DFSG-free music from Debian packages into a local cache.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="cache folder")
    parser.add_argument(
        "--packages", nargs="+", choices=sorted(PACKAGES), default=list(PACKAGES), metavar="PKG",
        help=f"subset of packages to fetch (default: all): {', '.join(PACKAGES)}",
    )  # fmt: skip
    parser.add_argument(
        "--keep-debs", action="store_true", help="keep the downloaded .deb files in DEST/debs"
    )
    parser.add_argument("--apt-update", action="store_true", help="run apt-get update first")
    args = parser.parse_args(argv)

    dest: Path = args.dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    if args.apt_update:
        run(["apt-get", "update", "-q"])
    start = time.monotonic()
    failures: list[str] = []
    for package in args.packages:
        if (dest / package / MANIFEST).is_file():
            print(f"{package}: already fetched, skipping", flush=True)
            continue
        t0 = time.monotonic()
        try:
            records = fetch_package(package, dest, args.keep_debs)
        except Exception as exc:  # report and continue with the other packages
            print(f"{package}: FAILED: {exc}", file=sys.stderr, flush=True)
            failures.append(package)
            continue
        hours = sum(r["duration_s"] for r in records) / 3600
        print(
            f"{package}: {len(records)} tracks, {hours:.2f} h in {time.monotonic() - t0:.1f} s",
            flush=True,
        )
    shutil.rmtree(dest / ".work", ignore_errors=True)
    records = rebuild_manifest(dest)
    hours = sum(r["duration_s"] for r in records) / 3600
    print(
        f"manifest: {len(records)} tracks, {hours:.2f} h in {dest / MANIFEST}; "
        f"this run took {time.monotonic() - start:.1f} s",
        flush=True,
    )
    if failures:
        print(f"failed packages: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
