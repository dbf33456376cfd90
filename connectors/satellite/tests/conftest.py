"""The satellite plugin's tests import satellite_helpers beside them (with
--import-mode=importlib this folder is no package: a tests/__init__.py here would clash with
the root tests package)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
