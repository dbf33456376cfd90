"""Rayvens' quote example, offline: an http-source polls a quote endpoint, a comparator Ray
actor behind an operator topic says whether the price went up or down, and a slack-sink
posts that. A local quote endpoint and a local Slack webhook stand in for the real ones.

    python examples/quotes.py
"""

import asyncio
import json
import sys

import ray

import eventray as er
from eventray_http.testing import Reply, ScriptedEndpoint, SlackWebhook

PRICES = [189.0, 190.5, 190.5, 188.2]


@ray.remote
class Comparator:
    def __init__(self) -> None:
        self.last_quote = None

    def ingest(self, event: str) -> str | None:
        quote = json.loads(event)[0]["price"]
        try:
            if self.last_quote:
                if quote > self.last_quote:
                    return "AAPL is up"
                if quote < self.last_quote:
                    return "AAPL is down"
                return "AAPL is unchanged"
            return None
        finally:
            self.last_quote = quote


async def main(url: str | None = None) -> None:
    quotes = ScriptedEndpoint([Reply(200, [{"symbol": "AAPL", "price": p}]) for p in PRICES],
                              path="/api/v3/quote-short/AAPL")
    async with quotes, SlackWebhook() as slack, er.connect(url) as bus:
        source_config = dict(kind="http-source", url=quotes.url, period=200)
        source = bus.topic("http", source=source_config)
        sink_config = dict(kind="slack-sink", channel="#rayvens", webhookUrl=slack.url)
        sink = bus.topic("slack", sink=sink_config)
        operator = bus.topic("comparator", operator=Comparator.remote())
        source >> operator >> sink
        for message in await slack.wait_for(3, timeout=60):
            print(message["channel"], message["text"])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
