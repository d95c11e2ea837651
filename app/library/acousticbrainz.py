"""The fields beets' `acousticbrainz` plugin used to fill, from our scores, where the meaning
really matches.

AcousticBrainz computed each `mood_*` field and `danceable` with a binary classifier (happy or
not, ...) whose output was the probability of the positive class, deciding at 0.5;
`voice_instrumental` and `gender` were the winning class's name. Our tags are multi-label
scores with a calibrated decision threshold each, mostly far below 0.5 (a Last.fm tag is rare),
so a raw score cannot stand in for such a probability. Each numeric field here is its tags'
score *rescaled so that the tag's threshold lands on 0.5*: linear from 0 to the threshold onto
[0, 0.5] and from the threshold to 1 onto [0.5, 1]. Order is kept, 0 and 1 stay where they
are, and `mood_happy:0.5..` means what it meant: the model says happy. Where several of our tags
mean one field (`mood_relaxed`: chill, chillout, mellow), the field takes the highest.

| field | from | notes |
|---|---|---|
| `mood_happy` | msd/happy | |
| `mood_sad` | msd/sad | |
| `mood_party` | msd/party | |
| `mood_relaxed` | msd/chill, msd/chillout, msd/mellow | Last.fm's relaxed-sounding tags |
| `mood_acoustic` | msd/acoustic | |
| `mood_electronic` | mtt/electronic, msd/electronic, msd/electronica | AB's was genre-like too |
| `danceable` | mtt/dance, msd/dance | dance music, not a rhythm analysis |
| `voice_instrumental` | vocal tags against no-vocals tags | set when one side passes, not both |
| `gender` | female tags against male tags | only on `voice`, when one side passes |

Left out, because no tag of ours means them: `mood_aggressive` (no aggressive tag; metal or
loud are not the same thing), `genre_rosamerica` (another genre set), `bpm`, `initial_key`,
`key_strength`, `chords_*`, `tonal`, `rhythm`, `timbre`, `moods_mirex`, `average_loudness`. A
field whose tags the model lacks (v1 has no MSD tags) is left out too.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.tags import Tag

MOOD_SOURCES: dict[str, tuple[str, ...]] = {
    "mood_happy": ("msd/happy",),
    "mood_sad": ("msd/sad",),
    "mood_party": ("msd/party",),
    "mood_relaxed": ("msd/chill", "msd/chillout", "msd/mellow"),
    "mood_acoustic": ("msd/acoustic",),
    "mood_electronic": ("mtt/electronic", "msd/electronic", "msd/electronica"),
    "danceable": ("mtt/dance", "msd/dance"),
}
VOICE_GROUPS = frozenset({"vocal", "female", "male", "choir"})
INSTRUMENTAL_GROUP = "no vocals"
LEFT_OUT = (
    "mood_aggressive",
    "genre_rosamerica",
    "bpm",
    "initial_key",
    "key_strength",
    "chords_changes_rate",
    "chords_key",
    "chords_number_rate",
    "chords_scale",
    "tonal",
    "rhythm",
    "timbre",
    "moods_mirex",
    "average_loudness",
)
FIELD_DIGITS = 4


def rescaled(score: float, threshold: float) -> float:
    """`score` mapped so that `threshold` becomes 0.5, piecewise linear, 0 and 1 fixed."""
    if threshold <= 0.0:
        return 0.5 + 0.5 * score
    if threshold >= 1.0:
        return 0.5 * score
    if score < threshold:
        return 0.5 * score / threshold
    return 0.5 + 0.5 * (score - threshold) / (1.0 - threshold)


def _index(tags: Sequence[Tag], tag_id: str) -> int | None:
    """The output of `tag_id` (`msd/happy`); in a model without taxonomies, its bare name."""
    for i, tag in enumerate(tags):
        if tag.id == tag_id or (tag.taxonomy is None and tag.name == tag_id.split("/", 1)[1]):
            return i
    return None


def acousticbrainz_fields(
    tags: Sequence[Tag], thresholds: Sequence[float], scores: Sequence[float]
) -> dict[str, float | str]:
    """The fields of the module docstring's table that this model can fill, for one track."""
    fields: dict[str, float | str] = {}
    for name, sources in MOOD_SOURCES.items():
        found = [i for i in (_index(tags, source) for source in sources) if i is not None]
        if found:
            value = max(rescaled(scores[i], thresholds[i]) for i in found)
            fields[name] = round(value, FIELD_DIGITS)

    def passes(groups: frozenset[str]) -> bool:
        return any(
            tag.synonym_group in groups and scores[i] >= thresholds[i] for i, tag in enumerate(tags)
        )

    has_voice_tags = any(tag.synonym_group in VOICE_GROUPS for tag in tags)
    has_instrumental_tags = any(tag.synonym_group == INSTRUMENTAL_GROUP for tag in tags)
    if not (has_voice_tags and has_instrumental_tags):
        return fields
    voice, instrumental = passes(VOICE_GROUPS), passes(frozenset({INSTRUMENTAL_GROUP}))
    if voice != instrumental:
        fields["voice_instrumental"] = "voice" if voice else "instrumental"
    if voice and not instrumental:
        female, male = passes(frozenset({"female"})), passes(frozenset({"male"}))
        if female != male:
            fields["gender"] = "female" if female else "male"
    return fields
