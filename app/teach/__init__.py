"""Teaching the tagger new tags from examples: `tagger teach` (docs/custom-tags.md)."""
