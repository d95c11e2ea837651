"""Distilling the bundled default model from MTT_musicnn on real and rendered music."""
