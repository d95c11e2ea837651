"""Names, taxonomies, one tag per synonym group and the grouped listing
(app/pipeline/vocabulary.py), on the real vocabularies of model/tags.py."""

from __future__ import annotations

import pytest
import torch

from app.pipeline.describe import top_indices, top_tags
from app.pipeline.vocabulary import (
    AmbiguousTagError,
    UnknownTagError,
    UnknownTaxonomyError,
    Vocabulary,
    VocabularyError,
    tag_fields,
)
from model.tags import MTAT_TAGS, TWO_VOCABULARY_TAGS

BOTH = Vocabulary(TWO_VOCABULARY_TAGS)
MTT = Vocabulary(MTAT_TAGS)
FEMALE = {
    "mtt/female",
    "mtt/woman",
    "mtt/female vocal",
    "mtt/female voice",
    "msd/female vocalists",
    "msd/female vocalist",
}


def test_taxonomies_and_defaults() -> None:
    assert BOTH.taxonomies == ("mtt", "msd")
    assert MTT.taxonomies == ()
    assert BOTH.default_synonyms == "one"
    assert MTT.default_synonyms == "all"  # single-vocabulary answers stay what they were
    assert BOTH.synonyms("all") == "all"
    with pytest.raises(VocabularyError, match="synonyms must be one of one, all"):
        BOTH.synonyms("some")


def test_select_a_taxonomy() -> None:
    assert BOTH.select("mtt") == tuple(range(50))
    assert BOTH.select("msd") == tuple(range(50, 100))
    assert BOTH.select(None) == tuple(range(100))
    with pytest.raises(UnknownTaxonomyError, match=r"unknown taxonomy 'lastfm'.* mtt, msd") as e:
        BOTH.select("lastfm")
    assert e.value.taxonomies == ("mtt", "msd")
    with pytest.raises(UnknownTaxonomyError, match="has no taxonomies"):
        MTT.select("mtt")


def test_resolve_ids_and_unambiguous_names() -> None:
    assert BOTH.resolve("msd/rock") == 50
    assert BOTH.resolve("mtt/rock") == 7
    assert BOTH.resolve("jazz") == 59  # only MSD has it
    assert BOTH.resolve("harpsichord") == 22  # only MTT has it
    assert BOTH.resolve("rock", taxonomy="msd") == 50
    with pytest.raises(AmbiguousTagError) as error:
        BOTH.resolve("rock")
    assert error.value.candidates == ("mtt/rock", "msd/rock")
    assert "name one of them by its id" in str(error.value)
    with pytest.raises(UnknownTagError, match="unknown tag 'kazoo'"):
        BOTH.resolve("kazoo")
    assert MTT.resolve("rock") == 7


def test_catalogue_filters_mean_tags_or_groups_within_one_taxonomy() -> None:
    ids = BOTH.ids
    assert [ids[i] for i in BOTH.resolve_filter("msd/female")] == [
        "msd/female vocalists",
        "msd/female vocalist",
    ]
    assert [ids[i] for i in BOTH.resolve_filter("mtt/vocal")] == [
        "mtt/vocal",
        "mtt/singing",
        "mtt/vocals",
        "mtt/voice",
    ]
    assert [ids[i] for i in BOTH.resolve_filter("msd/rock")] == ["msd/rock"]
    assert [ids[i] for i in BOTH.resolve_filter("jazz")] == ["msd/jazz"]
    with pytest.raises(AmbiguousTagError) as error:
        BOTH.resolve_filter("female")
    assert error.value.candidates == ("mtt/female", "msd/female")
    # A single-vocabulary model: names and groups as before taxonomies.
    assert [MTT.ids[i] for i in MTT.resolve_filter("female")] == [
        "female",
        "woman",
        "female vocal",
        "female voice",
    ]


def test_one_per_group_keeps_the_best_member_of_each_group() -> None:
    scores = torch.zeros(100)
    scores[BOTH.ids.index("msd/female vocalists")] = 0.9
    scores[BOTH.ids.index("mtt/woman")] = 0.8
    scores[BOTH.ids.index("mtt/female")] = 0.7
    scores[BOTH.ids.index("msd/jazz")] = 0.6
    scores[BOTH.ids.index("mtt/rock")] = 0.5
    scores[BOTH.ids.index("msd/rock")] = 0.4
    best = top_indices(scores, TWO_VOCABULARY_TAGS, 3, one_per_group=True)
    assert [BOTH.ids[i] for i in best] == ["msd/female vocalists", "msd/jazz", "mtt/rock"]
    every = top_indices(scores, TWO_VOCABULARY_TAGS, 3)
    assert [BOTH.ids[i] for i in every] == ["msd/female vocalists", "mtt/woman", "mtt/female"]
    # Within a taxonomy, groups still count once: mtt's female tags are one.
    mtt_best = top_indices(
        scores, TWO_VOCABULARY_TAGS, 2, among=BOTH.select("mtt"), one_per_group=True
    )
    assert [BOTH.ids[i] for i in mtt_best] == ["mtt/woman", "mtt/rock"]


def test_a_full_top_k_lists_each_of_the_71_groups_once() -> None:
    scores = torch.rand(100, generator=torch.Generator().manual_seed(3))
    thresholds = torch.full((100,), 0.5)
    decisions = top_tags(scores, TWO_VOCABULARY_TAGS, thresholds, 100, one_per_group=True)
    groups = [d.tag.synonym_group for d in decisions]
    assert len(groups) == len(set(groups)) == 71
    assert sum(d.tag.id in FEMALE for d in decisions) == 1
    # Threshold decisions stay per tag.
    assert all(d.passes_threshold == (d.score >= 0.5) for d in decisions)


def test_tag_fields_name_the_tag_by_id_and_keep_the_old_order() -> None:
    msd_rock = TWO_VOCABULARY_TAGS[50]
    fields = tag_fields(msd_rock, score=0.5, threshold=0.4, passes_threshold=True)
    assert list(fields) == [
        "tag",
        "score",
        "category",
        "synonym_group",
        "taxonomy",
        "threshold",
        "passes_threshold",
    ]
    assert (fields["tag"], fields["taxonomy"], fields["synonym_group"]) == (
        "msd/rock",
        "msd",
        "rock",
    )
    old = tag_fields(MTAT_TAGS[0], score=0.5, threshold=0.4, passes_threshold=True)
    assert old == {
        "tag": "guitar",
        "score": 0.5,
        "category": "instrument",
        "synonym_group": "guitar",
        "threshold": 0.4,
        "passes_threshold": True,
    }


def test_listing_groups_by_taxonomy_then_category() -> None:
    listing = BOTH.listing([0.5] * 100, None)
    assert len(listing["tags"]) == 100
    assert [group["taxonomy"] for group in listing["taxonomies"]] == ["mtt", "msd"]
    msd = listing["taxonomies"][1]["categories"]
    assert [c["category"] for c in msd] == ["genre", "era", "mood", "instrument", "vocal"]
    era = next(c for c in msd if c["category"] == "era")
    assert [t["id"] for t in era["tags"]] == [
        "msd/00s",
        "msd/80s",
        "msd/90s",
        "msd/oldies",
        "msd/70s",
        "msd/60s",
    ]
    assert era["tags"][0] == {
        "index": 57,
        "id": "msd/00s",
        "taxonomy": "msd",
        "name": "00s",
        "category": "era",
        "synonym_group": "00s",
        "threshold": 0.5,
    }
    mtt = listing["taxonomies"][0]["categories"]
    assert [c["category"] for c in mtt] == [
        "genre",
        "mood",
        "instrument",
        "vocal",
        "tempo/dynamics",
    ]
    only_msd = BOTH.listing([0.5] * 100, "msd")
    assert [t["index"] for t in only_msd["tags"]] == list(range(50, 100))
    assert [g["taxonomy"] for g in only_msd["taxonomies"]] == ["msd"]


def test_listing_of_a_single_vocabulary_model() -> None:
    listing = MTT.listing([0.5] * 50, None)
    assert listing["tags"][0] == {
        "index": 0,
        "name": "guitar",
        "category": "instrument",
        "synonym_group": "guitar",
        "threshold": 0.5,
    }
    assert [g["taxonomy"] for g in listing["taxonomies"]] == [None]
    assert sum(len(c["tags"]) for c in listing["taxonomies"][0]["categories"]) == 50
