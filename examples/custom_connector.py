"""A connector of your own: a bounded "dice-source" and a "jsonl-sink", written with only the
public interface (``eventray``), used by a stream on the memory transport.

    python examples/custom_connector.py [path/to/rolls.jsonl]

Here both kinds are registered in-process with ``er.registry.register_connector``. A real
plugin registers them through entry points instead, so they are found once it is installed
and nothing needs to import it first; in the plugin's pyproject.toml:

    [project.entry-points."eventray.connectors"]
    dice-source = "my_plugin:DiceSource"
    jsonl-sink = "my_plugin:JsonlSink"

and then ``eventray connectors`` lists them.
"""

import asyncio
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

import eventray as er


class DiceConfig(er.ConnectorConfig):
    rolls: Annotated[int, Field(ge=0)]
    sides: Annotated[int, Field(ge=2)] = 6
    seed: int = 0


class DiceSource(er.BaseSource[DiceConfig]):
    """``rolls`` seeded rolls of a die with ``sides`` sides; its position is the count."""

    kind = "dice-source"
    config_type = DiceConfig
    bounded = True  # it ends by itself, so collect() accepts it

    def __init__(self, config: Any = None, /, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.rolled = 0

    async def read(self, max_events: int) -> Sequence[er.Event] | None:
        if self.rolled >= self.config.rolls:
            return None
        end = min(self.config.rolls, self.rolled + max_events)
        events = [er.Event(self._roll(index)) for index in range(self.rolled, end)]
        self.rolled = end
        return events

    def _roll(self, index: int) -> int:  # each roll from its own seed: batching cannot matter
        return random.Random(self.config.seed * 1_000_003 + index).randint(1, self.config.sides)

    def snapshot(self) -> int:
        return self.rolled

    def restore(self, state: Any) -> None:
        self.rolled = int(state)


class JsonlConfig(er.ConnectorConfig):
    path: str


class JsonlSink(er.BaseSink[JsonlConfig]):
    """Appends one JSON line per event to ``path``."""

    kind = "jsonl-sink"
    config_type = JsonlConfig

    async def write(self, batch: Sequence[er.Event]) -> None:
        lines = "".join(json.dumps(event.value) + "\n" for event in batch)
        await asyncio.to_thread(self._append, lines)

    def _append(self, lines: str) -> None:
        with Path(self.config.path).open("a", encoding="utf-8") as file:
            file.write(lines)


er.registry.register_connector("dice-source", DiceSource)
er.registry.register_connector("jsonl-sink", JsonlSink)


async def main(path: str) -> None:
    async with er.connect("memory") as bus:
        sixes = await (
            bus.from_source({"kind": "dice-source", "rolls": 100, "seed": 7})
            .sink({"kind": "jsonl-sink", "path": path})
            .filter(lambda roll: roll == 6)
            .collect()
        )
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    print(f"wrote {len(text.splitlines())} rolls to {Path(path).name}")
    print(f"rolled {len(sixes)} sixes")
    try:
        er.connector("dice-source", rols=3)
    except er.ConfigError as error:
        print(f"bad config: {error}")


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "rolls.jsonl")
    asyncio.run(main(target))
