"""The seed's Slack example: an http-source polls a quote, a Comparator actor behind an
operator topic says whether it went up or down, a slack-sink posts that. The quote URL is
sys.argv[3]; it runs until its standard input closes (the seed's ran until stopped)."""
import json
import sys

import ray

import eventray.compat.rayvens as rayvens

slack_channel, slack_webhook, quote_url = sys.argv[1:4]

ray.init()
client = rayvens.Client()

source_config = dict(kind='http-source', url=quote_url, period=300)
source = client.create_topic('http', source=source_config)

sink_config = dict(kind='slack-sink',
                   channel=slack_channel,
                   webhookUrl=slack_webhook)
sink = client.create_topic('slack', sink=sink_config)


# Actor to compare APPL quote with last quote
@ray.remote
class Comparator:
    def __init__(self):
        self.last_quote = None

    def ingest(self, event):
        payload = json.loads(event)  # parse event string to json
        quote = payload[0]['price']  # payload[0] is AAPL
        try:
            if self.last_quote:
                if quote > self.last_quote:
                    return 'AAPL is up'
                if quote < self.last_quote:
                    return 'AAPL is down'
                return 'AAPL is unchanged'
        finally:
            self.last_quote = quote


# comparator instance
comparator = Comparator.remote()

operator = client.create_topic('comparator', operator=comparator)

source >> operator >> sink

sys.stdin.read()
