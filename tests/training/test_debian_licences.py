"""Licences of installed files from a machine-readable debian/copyright (DEP-5)."""

from __future__ import annotations

from training.debian_licences import (
    Credit,
    Dep5Paragraph,
    LicenceMatch,
    licence_for,
    parse_credits,
    parse_dep5,
)

COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: somegame

Files: *
Copyright: 2010 Some Studio
License: GPL-2+

Files: ./data//music/*
Copyright: 2011 A. Composer
 2012 B. Composer
License: CC-BY-SA-3.0
 The full text follows.

Files: data/music/theme.ogg
Copyright: 2013 C. Composer
License: CC0-1.0
"""


def test_paragraphs_are_parsed_with_normalised_patterns() -> None:
    assert parse_dep5(COPYRIGHT) == [
        Dep5Paragraph(("*",), "GPL-2+", "2010 Some Studio"),
        Dep5Paragraph(("data/music/*",), "CC-BY-SA-3.0", "2011 A. Composer"),
        Dep5Paragraph(("data/music/theme.ogg",), "CC0-1.0", "2013 C. Composer"),
    ]


def test_a_free_form_copyright_file_is_not_dep5() -> None:
    assert parse_dep5("This package was debianized by someone.\n\nLicense: GPL\n") is None
    assert parse_dep5("") is None


def test_the_last_matching_paragraph_wins_on_the_installed_path() -> None:
    dep5 = parse_dep5(COPYRIGHT)
    assert dep5 is not None
    installed = "usr/share/games/somegame/data/music"
    assert licence_for(f"{installed}/theme.ogg", dep5) == LicenceMatch(
        "CC0-1.0", "2013 C. Composer", "debian/copyright (Files: data/music/theme.ogg)"
    )
    assert licence_for(f"{installed}/battle.ogg", dep5) == LicenceMatch(
        "CC-BY-SA-3.0", "2011 A. Composer", "debian/copyright (Files: data/music/*)"
    )
    assert licence_for("usr/games/somegame", dep5) == LicenceMatch(
        "GPL-2+", "2010 Some Studio", "debian/copyright (Files: *)"
    )


def test_a_renamed_top_directory_still_matches_through_the_pattern_tail() -> None:
    # The source's data/music/* is installed as .../somegame2/music/: "music/*" is tried too.
    dep5 = [Dep5Paragraph(("data/music/*",), "CC-BY-4.0", "")]
    match = licence_for("usr/share/somegame2/music/intro.ogg", dep5)
    assert match is not None
    assert match.licence == "CC-BY-4.0"
    assert match.source == "debian/copyright (Files: data/music/*, matched as music/*)"


def test_debian_paths_never_degrade_to_a_catch_all() -> None:
    dep5 = [Dep5Paragraph(("debian/*",), "GPL-2+", "")]
    assert licence_for("usr/share/games/somegame/music/a.ogg", dep5) is None


GCOMPRIS_STYLE = """\
Copyright: Adam Cuerden
License: Public Domain
Source: https://commons.wikimedia.org/wiki/File:Ombra_mai_fu.ogg
Files:
italy.ogg

Copyright: peakfiddler
License: CC-BY 3.0
Source: https://commons.wikimedia.org/wiki/File:The_Wind.ogg
Files:
ireland.ogg
ireland.webp

drum_kit.ogg: http://www.freesound.org/  Creative Commons Sampling Plus 1.0 License.
all other ogg files are released under the GPL
"""


def test_credits_files_give_a_licence_per_listed_file_and_ignore_prose() -> None:
    credits = parse_credits(GCOMPRIS_STYLE)
    assert credits == {
        "italy.ogg": Credit(
            "Public Domain",
            "Adam Cuerden",
            "https://commons.wikimedia.org/wiki/File:Ombra_mai_fu.ogg",
        ),
        "ireland.ogg": Credit(
            "CC-BY 3.0", "peakfiddler", "https://commons.wikimedia.org/wiki/File:The_Wind.ogg"
        ),
        "ireland.webp": Credit(
            "CC-BY 3.0", "peakfiddler", "https://commons.wikimedia.org/wiki/File:The_Wind.ogg"
        ),
    }
    assert "drum_kit.ogg" not in credits
