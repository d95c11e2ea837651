"""Old home of `create_app`, kept only because tests/training/test_pipeline.py (owned by the
training worktree) still imports it; new code imports `app.service.app`. Delete with that import.
"""

from app.service.app import create_app

__all__ = ["create_app"]
