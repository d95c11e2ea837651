"""Which licence a file of a Debian package is under, from its machine-readable copyright
file (DEP-5): the last `Files:` paragraph whose pattern matches wins, as the format says."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEP5_FORMAT = re.compile(r"^Format:\s*\S*copyright-format/1\.0", re.IGNORECASE)


@dataclass(frozen=True)
class Dep5Paragraph:
    patterns: tuple[str, ...]
    licence: str  # short name from the first line of License:, "" if the field is empty
    holder: str  # first line of Copyright:, needed for CC-BY attribution


@dataclass(frozen=True)
class LicenceMatch:
    licence: str
    holder: str
    source: str


def parse_dep5(text: str) -> list[Dep5Paragraph] | None:
    """Parse a machine-readable debian/copyright into Files paragraphs; None if not DEP-5."""
    if not DEP5_FORMAT.search(text.lstrip().splitlines()[0] if text.strip() else ""):
        return None
    paragraphs: list[Dep5Paragraph] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and current:
                fields[current] += "\n" + line.strip()
            elif ":" in line and not line.startswith("#"):
                current, _, value = line.partition(":")
                current = current.strip().lower()
                fields[current] = value.strip()
        if "files" in fields and "license" in fields:
            licence = (fields["license"].splitlines() or [""])[0].strip()
            holder = (fields.get("copyright", "").splitlines() or [""])[0].strip()
            # Some packages write patterns as "./dat/x.ogg" or with doubled slashes.
            patterns = tuple(
                re.sub(r"/+", "/", p).removeprefix("./") for p in fields["files"].split()
            )
            paragraphs.append(Dep5Paragraph(patterns, licence, holder))
    return paragraphs


def _dep5_regex(pattern: str) -> re.Pattern[str]:
    """DEP-5 globs: only ``*`` (any string, including "/") and ``?`` are special."""
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + r"\Z")


def _pattern_tails(pattern: str) -> list[str]:
    """The pattern itself, then versions with leading literal directories dropped.

    Installs often rename the top of the source tree (supertux's ``data/music/*`` is installed
    as ``.../supertux2/music/``), so ``music/*`` is tried too. At least one directory must
    remain, so that e.g. ``debian/*`` never degrades to ``*``.
    """
    parts = pattern.split("/")
    tails = [pattern]
    for i in range(1, len(parts) - 1):
        if any(c in parts[i - 1] for c in "*?"):
            break
        tails.append("/".join(parts[i:]))
    return tails


def licence_for(path: str, dep5: list[Dep5Paragraph]) -> LicenceMatch | None:
    """Licence of an installed file from DEP-5 paragraphs, or None if nothing matches.

    DEP-5 patterns name paths in the *source* tree, which the installed path only ends with
    (``data/music/x.ogg`` is installed as ``usr/share/games/foo/data/music/x.ogg``), so every
    path suffix is tried, also against the pattern's tails (see ``_pattern_tails``). As in
    DEP-5, the last matching paragraph wins.
    """
    parts = path.split("/")
    suffixes = ["/".join(parts[i:]) for i in range(len(parts))]
    found: LicenceMatch | None = None
    for paragraph in dep5:
        for pattern in paragraph.patterns:
            tail = next(
                (
                    t
                    for t in _pattern_tails(pattern)
                    if any(_dep5_regex(t).match(s) for s in suffixes)
                ),
                None,
            )
            if tail is not None:
                how = "" if tail == pattern else f", matched as {tail}"
                source = f"debian/copyright (Files: {pattern}{how})"
                found = LicenceMatch(paragraph.licence, paragraph.holder, source)
                break
    return found


@dataclass(frozen=True)
class Credit:
    """Licence of one file from a credits file shipped beside it (not debian/copyright)."""

    licence: str
    holder: str
    origin: str  # where upstream took the file from (a URL), "" if not given


CREDIT_FIELDS = ("copyright", "license", "licence", "source", "files")


def parse_credits(text: str) -> dict[str, Credit]:
    """Per-file credits in the style of GCompris' resource READMEs: blank-line separated blocks
    of ``Copyright:``, ``License:`` and ``Source:`` lines, then ``Files:`` and one file name per
    line. Lines of any other shape (free prose) are ignored, so a file they mention is absent.
    """
    credits: dict[str, Credit] = {}
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        files: list[str] = []
        in_files = False
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() in CREDIT_FIELDS:
                field = key.strip().lower()
                fields["license" if field == "licence" else field] = value.strip()
                in_files = field == "files"
                if in_files:
                    files.extend(value.split())
            elif in_files and line.strip():
                files.append(line.strip())
        licence = fields.get("license", "")
        for name in files if licence else []:
            credits[name] = Credit(licence, fields.get("copyright", ""), fields.get("source", ""))
    return credits
