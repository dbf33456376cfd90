"""Rayvens 0.7's Slack example: three streams, http-source -> comparator actor -> slack-sink,
with a function logging what the source reads. The quote URL is sys.argv[3]; the source is
added once the streams are connected (Camel took its time to start one; eventray does not),
and instead of sleeping for two minutes the program disconnects the source once it has been
idle for a second."""
import json
import sys

import ray
import eventray.compat.rayvens as rayvens

slack_channel, slack_webhook, quote_url = sys.argv[1:4]

ray.init()
rayvens.init()

source_config = dict(kind='http-source', url=quote_url, period=200)
source = rayvens.Stream('http')

source >> (lambda event: print('LOG:', event))

sink_config = dict(kind='slack-sink',
                   channel=slack_channel,
                   webhookUrl=slack_webhook)
sink = rayvens.Stream('slack', sink_config=sink_config)


@ray.remote
class Comparator:
    def __init__(self):
        self.last_quote = None

    def append(self, event):
        payload = json.loads(event)
        quote = payload['quoteResponse']['result'][0]['regularMarketPrice']
        try:
            if self.last_quote:
                if quote > self.last_quote:
                    return 'AAPL is up'
                elif quote < self.last_quote:
                    return 'AAPL is down'
                else:
                    return 'AAPL is stable'
        finally:
            self.last_quote = quote


comparator = Comparator.remote()
operator = rayvens.Stream('comparator', operator=comparator)

source >> operator >> sink
print('source', source.add_source(source_config))

source.disconnect_all(after_idle_for=1)
