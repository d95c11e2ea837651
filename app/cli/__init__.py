"""The `tagger` command line: `serve`, `tag` and `tags`."""

from app.cli.main import main

__all__ = ["main"]
