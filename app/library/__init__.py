"""Tags where music libraries keep them: the tags chosen from a track's scores (`choice`), written
into the files' own metadata (`filetags`), and the fields the beets plugin fills
(`acousticbrainz`). `tagger write-tags`, `tagger strip-tags` and `beetsplug.musictagger` all
use these modules; none decides these things itself.
"""
