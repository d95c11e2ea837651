"""Tag sets beside the base model, loaded the same way by `tagger tag` and the service.

`TAGGER_TAG_SETS` (or `tagger tag --tag-sets`) names tag set files and folders; every
`.safetensors` file in a folder is a tag set. Loading one that was taught on another base, or
two whose tag ids collide, fails with a message naming the file (model.tagset).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from model.checkpoint import Checkpoint
from model.tagset import TagSet, TagSetError, extend_checkpoint, find_tag_sets, load_tag_set


def load_tag_sets(paths: Sequence[Path]) -> list[TagSet]:
    """The tag sets the paths name, in order (files as given, folders' files by name).

    Raises:
        model.tagset.TagSetError: a missing, unreadable or modified file.
    """
    return [load_tag_set(path) for path in find_tag_sets(paths)]


def with_tag_sets(checkpoint: Checkpoint, paths: Sequence[Path]) -> Checkpoint:
    """`checkpoint` extended by the tag sets `paths` name (itself when they name none).

    Raises:
        model.tagset.TagSetError: a set that cannot be read or was taught on another base.
    """
    return extend_checkpoint(checkpoint, load_tag_sets(paths))


def check_tag_sets(checkpoint: Path, paths: Sequence[Path]) -> None:
    """Refuse, before a service starts, tag sets it could not serve with `checkpoint`: an
    unreadable set, or one taught on another base (without loading the network).

    Raises:
        model.tagset.TagSetError: the message names the file and the problem.
    """
    sets = load_tag_sets(paths)
    if not sets:
        return
    digest = hashlib.sha256()
    with checkpoint.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    for tag_set in sets:
        if tag_set.base.sha256 != digest.hexdigest():
            raise TagSetError(
                f"{tag_set.path}: tag set {tag_set.name!r} was taught on "
                f"{tag_set.base.model_id}, not on {checkpoint}; rebuild it with "
                f"`tagger retrain {tag_set.path} --checkpoint {checkpoint}`"
            )
