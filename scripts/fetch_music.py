"""`python -m training fetch-music`, kept as a script for the tests' setup and the CI, which run
it before the training extra is installed (it needs only numpy and soundfile)."""

from __future__ import annotations

import sys
from pathlib import Path

# Import this checkout's module, not whichever checkout an editable install points at.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.fetch_music import main

if __name__ == "__main__":
    raise SystemExit(main())
