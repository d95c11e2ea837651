"""Old home of `Settings`, kept only because tests/training/test_pipeline.py (owned by the
training worktree) still imports it; new code imports `app.service.settings`. Delete with it.
"""

from app.service.settings import Settings

__all__ = ["Settings"]
