"""Ray Streaming's word count, on eventray: this file's words, counted as they stream by.

    python examples/word_count.py           # on the default transport
    python examples/word_count.py memory    # in this process only
"""

import asyncio
import sys

import eventray as er


async def main(url: str | None = None) -> None:
    async with er.connect(url) as bus:
        job = await (
            bus.read_text_file(__file__)
            .set_parallelism(1)
            .flat_map(lambda x: x.split())
            .map(lambda x: (x, 1))
            .key_by(lambda x: x[0])
            .reduce(lambda old_value, new_value: (old_value[0], old_value[1] + new_value[1]))
            .filter(lambda x: "ray" not in x)
            .sink(lambda x: print("result", x))
            .run("word_count")
        )
        await job.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
