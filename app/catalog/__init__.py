"""The catalogue: tracks, tags and embeddings in SQLite, a FAISS index, similarity search."""
