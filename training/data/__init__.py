"""Datasets: MagnaTagATune, own-data manifests, the prepared-dataset cache, training crops."""
