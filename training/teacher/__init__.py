"""Teacher-model utilities: reading the pretrained musicnn weights without TensorFlow."""
