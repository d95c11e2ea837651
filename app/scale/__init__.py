"""Batch tagging on Ray Data: `tagger tag --engine ray` (needs the `scale` extra).

`storage` finds SOURCE's files and what DEST already holds, `stages` are the Ray Data stages
(decode on CPU tasks, score in an actor pool, write Parquet or JSON Lines), `job` assembles and
runs them on the Ray cluster the process is connected to. The decoder, windowing, Runtime and
records are the ones `tagger tag` uses (`model/`, `app/pipeline/`); nothing here is CLI code.
"""
