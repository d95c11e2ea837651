"""Take files out of a Debian package without installing it or writing the rest of it.

`apt-get download` fetches the .deb (no root needed for the archive itself), and
`dpkg-deb --fsys-tarfile` is streamed, so only the members asked for ever reach the disk.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

AUDIO_SUFFIXES = frozenset({".ogg", ".oga", ".opus", ".mp3", ".wav", ".flac"})


def run(cmd: Sequence[str], cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        hint = ""
        if "Unable to locate package" in result.stderr or "no installation candidate" in (
            result.stderr
        ):
            hint = " (apt lists may be missing: rerun with --apt-update)"
        raise RuntimeError(
            f"{' '.join(cmd)} failed with exit code {result.returncode}{hint}:\n"
            f"{result.stderr.strip()}"
        )
    return result.stdout


def download_deb(package: str, workdir: Path, deb_cache: Path) -> Path:
    """Return a local .deb for ``package``: a kept one from ``deb_cache`` or a fresh download."""
    kept = sorted(deb_cache.glob(f"{package}_*.deb")) if deb_cache.is_dir() else []
    if kept:
        return kept[-1]
    run(["apt-get", "download", "-q", package], cwd=workdir)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get download {package} produced no .deb in {workdir}")
    return debs[-1]


def _member_path(name: str) -> str:
    """Normalise a tar member name ("./usr/share/x") to a package path ("usr/share/x")."""
    return str(PurePosixPath(name.removeprefix("./")))


def _resolve_link(member: tarfile.TarInfo) -> str:
    """Archive path that a symlink or hard link member points to."""
    if member.islnk():
        return _member_path(member.linkname)
    target = PurePosixPath(member.linkname)
    if target.is_absolute():
        return _member_path(str(target).lstrip("/"))
    parts: list[str] = []
    for part in (PurePosixPath(_member_path(member.name)).parent / target).parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


@dataclass
class Extraction:
    """Result of ``extract_selected``: package paths written, and every audio path seen (to
    give a useful error when a package moved its music)."""

    written: list[str]
    seen_audio: list[str]


def extract_selected(
    deb: Path, wanted: Iterable[str], root: Path, select: Callable[[str], bool]
) -> Extraction:
    """Stream the package's file tree and write the members that ``select(path)`` accepts.

    Streaming ``dpkg-deb --fsys-tarfile`` instead of ``dpkg-deb -x`` means the non-music part
    of a package (up to 1 GB of game data) is never written. ``wanted`` are exact paths to take
    as well. Links whose targets were not written are resolved in a second pass, so music that
    Debian deduplicated through symlinks is still found; the link path gets a copy.
    """
    exact = set(wanted)
    written: list[str] = []
    links: dict[str, str] = {}
    seen_audio: list[str] = []

    def stream(take: set[str] | None) -> Iterator[tuple[tarfile.TarInfo, str, IO[bytes] | None]]:
        with subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
        ) as p:
            assert p.stdout is not None
            with tarfile.open(fileobj=p.stdout, mode="r|*") as tar:
                for member in tar:
                    path = _member_path(member.name)
                    if take is not None and path not in take:
                        continue
                    handle = tar.extractfile(member) if member.isreg() else None
                    yield member, path, handle
            if p.wait() != 0:
                raise RuntimeError(f"dpkg-deb --fsys-tarfile {deb} failed ({p.returncode})")

    for member, path, handle in stream(None):
        if PurePosixPath(path).suffix.lower() in AUDIO_SUFFIXES:
            seen_audio.append(path)
        if not (path in exact or select(path)):
            continue
        if member.issym() or member.islnk():
            links[path] = _resolve_link(member)
        elif handle is not None:
            _write(handle, root / path)
            written.append(path)
    missing = {target for target in links.values() if not (root / target).is_file()}
    if missing:
        for _member, path, handle in stream(missing):
            if handle is not None:
                _write(handle, root / path)
    for link, target in links.items():
        if (root / target).is_file():
            (root / link).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / target, root / link)
            written.append(link)
    return Extraction(written, seen_audio)


def _write(handle: IO[bytes], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        shutil.copyfileobj(handle, out, length=1 << 20)
