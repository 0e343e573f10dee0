"""Where the repository and the shared real datasets are (`../shared/data` beside the clone; absent in a
user's clone, where the tests that need it skip with that reason)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# beside the clone (../shared), else where this project's machines keep it
SHARED = next(
    (p for p in (REPO.parent / "shared", Path("/work/shared")) if (p / "data").is_dir()), REPO.parent / "shared"
)
SHARED_DATA = SHARED / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"the shared data folder {SHARED_DATA} is absent")
