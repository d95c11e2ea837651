"""musictagger: the music-tagger's genres, moods, instruments and voice tags in a beets library.

`beet musictagger [QUERY]` tags the matching items with the model (in this process, or through
a running `tagger serve` with `url:`), in batches, and stores flexible attributes: our choices
(`tagger_genre`, `tagger_mood`, `tagger_instrument`, `tagger_vocal`, `tagger_tags`), the model
and a record of every score (`tagger_model`, `tagger_digest`, `tagger_record`), and the fields
beets' deprecated `acousticbrainz` plugin used to fill where the meaning really matches
(`mood_happy`, `mood_sad`, `mood_party`, `mood_relaxed`, `mood_acoustic`, `mood_electronic`,
`danceable`, `voice_instrumental`, `gender`; see `app.library.acousticbrainz` for the mapping).
Our moods also go into the `mood` field (and, with `genres: yes`, our genres into beets' own
`genres`), merged with what the file had or replacing it, exactly as `tagger write-tags` does;
with `write: yes` or `-w`, beets' own `write` puts them into the files: `mood` as ID3 `TMOO`,
Vorbis `MOOD` and MP4 `----:com.apple.iTunes:MOOD`, and the record as `MUSIC_TAGGER`, so
`tagger strip-tags` can take them out again. `auto: yes` tags items as `beet import` adds them.

    plugins: musictagger
    musictagger:
        auto: no           # tag on import
        force: no          # retag items already tagged by this model with these settings
        write: no          # write file tags (beets' write) after tagging
        url: ''            # a running tagger service; empty: the model runs in this process
        checkpoint: ''     # empty: TAGGER_CHECKPOINT or the bundled default model
        device: auto
        threshold: null    # null: the model's per-tag thresholds
        top_k: 3           # at most this many genres, moods, instruments, vocal tags
        taxonomy: null     # mtt or msd for one vocabulary of the default model
        mode: merge        # merge with the file's own moods/genres, or replace them
        genres: no         # also put our genres into beets' genres field
        batch_size: 32     # items tagged and stored per batch
        concurrency: 4     # files in flight at once with url:
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from beets import ui
from beets.dbcore import types
from beets.exceptions import UserError
from beets.library import Item, Library
from beets.plugins import BeetsPlugin
from beets.util import syspath
from mediafile import (
    ListMediaField,
    ListStorageStyle,
    MediaField,
    MP3DescStorageStyle,
    MP3ListStorageStyle,
    MP4ListStorageStyle,
    MP4StorageStyle,
    StorageStyle,
)

from app.library.acousticbrainz import MOOD_SOURCES, acousticbrainz_fields
from app.library.filetags import GENRE, MOOD, RECORD_NAME, FileState, plan_write
from app.library.scoring import LocalScorer, Scored, ScorerError, ServiceScorer

if TYPE_CHECKING:  # choosing needs torch: imported when items are tagged, not on every `beet`
    from app.library.choice import Choice, ChoiceSettings, Chooser

# Our choices, by category, under clear names.
CHOICE_FIELDS = {
    "genre": "tagger_genre",
    "mood": "tagger_mood",
    "instrument": "tagger_instrument",
    "vocal": "tagger_vocal",
}
AB_FLOATS = tuple(MOOD_SOURCES)
AB_STRINGS = ("voice_instrumental", "gender")


class MusicTaggerPlugin(BeetsPlugin):
    item_types = {  # noqa: RUF012 (beets reads this class attribute)
        **{name: types.MULTI_VALUE_DSV for name in CHOICE_FIELDS.values()},
        "tagger_tags": types.MULTI_VALUE_DSV,
        "tagger_model": types.STRING,
        "tagger_digest": types.STRING,
        "tagger_record": types.STRING,
        "mood": types.MULTI_VALUE_DSV,
        # Float(6), as beets' acousticbrainz plugin declared them: both may be enabled at once.
        **{name: types.Float(6) for name in AB_FLOATS},
        **{name: types.STRING for name in AB_STRINGS},
    }

    def __init__(self) -> None:
        super().__init__()
        self.config.add(
            {
                "auto": False,
                "force": False,
                "write": False,
                "url": "",
                "checkpoint": "",
                "device": "auto",
                "threshold": None,
                "top_k": 3,
                "taxonomy": None,
                "mode": "merge",
                "genres": False,
                "batch_size": 32,
                "concurrency": 4,
            }
        )
        # The file tags `tagger write-tags` uses, so that beets' write puts the same tags there.
        self.add_media_field(
            "mood",
            ListMediaField(
                MP3ListStorageStyle("TMOO"),
                MP4ListStorageStyle("----:com.apple.iTunes:MOOD"),
                ListStorageStyle("MOOD"),
            ),
        )
        self.add_media_field(
            "tagger_record",
            MediaField(
                MP3DescStorageStyle(RECORD_NAME),
                MP4StorageStyle(f"----:com.apple.iTunes:{RECORD_NAME}"),
                StorageStyle(RECORD_NAME),
            ),
        )
        self._scorer: LocalScorer | ServiceScorer | None = None
        if self.config["auto"].get(bool):
            self.register_listener("import_task_files", self._imported)

    # -- configuration ------------------------------------------------------------------------

    def _settings(self) -> ChoiceSettings:
        from app.library.choice import ChoiceSettings

        threshold = self.config["threshold"].get()
        taxonomy = self.config["taxonomy"].get()
        settings = ChoiceSettings(
            threshold=None if threshold is None else float(threshold),
            top_k=self.config["top_k"].get(int),
            taxonomy=None if not taxonomy else str(taxonomy),
            mode=self.config["mode"].as_str(),
        )
        settings.check()
        return settings

    def _scorer_now(self) -> LocalScorer | ServiceScorer:
        """The model, loaded once per beets run."""
        if self._scorer is None:
            url = self.config["url"].as_str()
            if url:
                self._scorer = ServiceScorer(url, concurrency=self.config["concurrency"].get(int))
            else:
                checkpoint = self.config["checkpoint"].as_str()
                self._scorer = LocalScorer(
                    checkpoint=None if not checkpoint else Path(checkpoint).expanduser(),
                    device=self.config["device"].as_str(),
                )
            self._log.info("model: {}", self._scorer.describe())
        return self._scorer

    def _chooser(self) -> Chooser:
        from app.library.choice import Chooser

        scorer = self._scorer_now()
        return Chooser(scorer.model_id, scorer.tags, scorer.thresholds, self._settings())

    def _digest(self, chooser: Chooser) -> str:
        genres = self.config["genres"].get(bool)
        return chooser.digest + ("+genres" if genres else "")

    # -- the command and the import hook ------------------------------------------------------

    def commands(self) -> list[ui.Subcommand]:
        command = ui.Subcommand(
            "musictagger", help="tag items with the music-tagger model (moods, genres, ...)"
        )
        command.parser.add_option(
            "-f", "--force", action="store_true", default=None,
            help="retag items already tagged by this model with these settings",
        )  # fmt: skip
        command.parser.add_option(
            "-w", "--write", action="store_true", default=None, help="write tags to files"
        )
        command.parser.add_option(
            "-W", "--nowrite", action="store_false", dest="write", help="do not write to files"
        )
        command.func = self._command
        return [command]

    def _command(self, lib: Library, options: Any, arguments: list[str]) -> None:
        force = self.config["force"].get(bool) if options.force is None else options.force
        write = self.config["write"].get(bool) if options.write is None else options.write
        items = list(lib.items(arguments))
        try:
            failed = self.tag_items(lib, items, force=force, write=write)
        except (ScorerError, ValueError) as error:  # ChoiceError is a ValueError
            raise UserError(f"musictagger: {error}") from error
        if failed:
            raise UserError(f"musictagger: {failed} of {len(items)} items failed (see above)")

    def _imported(self, session: Any, task: Any) -> None:
        items = list(task.imported_items())
        try:
            self.tag_items(session.lib, items, force=False, write=self.config["write"].get(bool))
        except (ScorerError, ValueError) as error:
            self._log.error("{}", error)

    # -- tagging ------------------------------------------------------------------------------

    def tag_items(self, lib: Library, items: Sequence[Item], *, force: bool, write: bool) -> int:
        """Tag `items` in batches, store the fields, write files if asked; returns failures."""
        chooser = self._chooser()
        digest = self._digest(chooser)
        todo = [item for item in items if force or item.get("tagger_digest") != digest]
        skipped = len(items) - len(todo)
        if skipped:
            self._log.info("{} items already tagged with these settings (--force retags)", skipped)
        failed = 0
        size = max(1, self.config["batch_size"].get(int))
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            scored = self._scorer_now().score([syspath(item.path) for item in batch])
            with lib.transaction():
                for item, result in zip(batch, scored, strict=True):
                    if not self._store(item, result, chooser, digest):
                        failed += 1
            if write:
                for item in batch:
                    if item.get("tagger_digest") == digest and not item.try_write():
                        failed += 1
            self._log.info("tagged {} of {} items", min(start + size, len(todo)), len(todo))
        return failed

    def _store(self, item: Item, result: Scored, chooser: Chooser, digest: str) -> bool:
        if result.scores is None:
            self._log.error("{}: {}", _display(item), result.error)
            return False
        choice = chooser.choose(result.scores)
        owned = item.get("tagger_digest") is not None
        for category, name in CHOICE_FIELDS.items():
            item[name] = list(choice.values[category])
        item["tagger_tags"] = list(choice.tags)
        item["tagger_model"] = choice.model_id
        item["tagger_digest"] = digest
        fields = acousticbrainz_fields(chooser.tags, chooser.decision_thresholds(), result.scores)
        for name in (*AB_FLOATS, *AB_STRINGS):
            if name in fields:
                item[name] = fields[name]
            elif owned and name in item:  # ours from an earlier run, no longer decided
                del item[name]
        self._apply_library_fields(item, choice)
        item.store()
        self._log.debug("{}: {}", _display(item), ", ".join(choice.tags))
        return True

    def _apply_library_fields(self, item: Item, choice: Choice) -> None:
        """`mood` (and `genres`) merged or replaced as `tagger write-tags` does in files, with the
        same record, so the file tags beets writes are the same."""
        genres_on = self.config["genres"].get(bool)
        if not genres_on:
            choice = dataclasses.replace(choice, values={**choice.values, "genre": ()})
        record = _record(item.get("tagger_record"))
        state = FileState(
            {GENRE: tuple(item.get("genres") or ()), MOOD: tuple(item.get("mood") or ())},
            record,
        )
        plan = plan_write(state, choice)
        if plan.fields[MOOD] or item.get("mood"):  # no empty MOOD atoms in files that had none
            item["mood"] = list(plan.fields[MOOD])
        if genres_on or (record and record.get("written", {}).get(GENRE)):
            item["genres"] = list(plan.fields[GENRE])
        item["tagger_record"] = plan.record


def _record(text: Any) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        record = json.loads(str(text))
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _display(item: Item) -> str:
    return f"{item.artist} - {item.title} ({syspath(item.path)})"
