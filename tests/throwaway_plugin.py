"""Builds a throwaway plugin distribution on disk, found only through its entry points."""

from __future__ import annotations

import textwrap
from pathlib import Path

MODULE = '''
from collections.abc import Sequence
from typing import Any

import eventray as er


class CountdownConfig(er.ConnectorConfig):
    start: int = er.alias_field("start", "startFrom")
    label: str = "n"


class Countdown(er.BaseSource[CountdownConfig]):
    """A bounded source: start, start-1, ..., 1."""

    kind = "countdown-source"
    config_type = CountdownConfig

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.next = self.config.start

    async def read(self, max_events: int) -> Sequence[er.Event] | None:
        if self.next <= 0:
            return None
        batch = []
        while self.next > 0 and len(batch) < max_events:
            batch.append(er.Event({self.config.label: self.next}))
            self.next -= 1
        return batch


class ShelfConfig(er.ConnectorConfig):
    shelf: str = er.alias_field("shelf", "shelfName")


SHELVES: dict[str, list[Any]] = {}


class Shelf(er.BaseSink[ShelfConfig]):
    kind = "shelf-sink"
    config_type = ShelfConfig

    async def write(self, batch: Sequence[er.Event]) -> None:
        SHELVES.setdefault(self.config.shelf, []).extend(e.value for e in batch)
'''

ENTRY_POINTS = """
[eventray.connectors]
countdown-source = throwaway_connectors:Countdown
shelf-sink = throwaway_connectors:Shelf
broken-sink = throwaway_connectors_missing:Nothing
"""


def build(root: Path) -> Path:
    """Write the distribution ``throwaway-connectors`` under ``root``; return the path."""
    (root / "throwaway_connectors.py").write_text(textwrap.dedent(MODULE))
    info = root / "throwaway_connectors-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: throwaway-connectors\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root
