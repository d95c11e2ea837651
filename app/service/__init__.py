"""The HTTP service: the FastAPI app, its routes, middleware, batching and settings."""
