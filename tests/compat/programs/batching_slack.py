"""Rayvens 0.7's batching example: a stream batching events by two, a Ray task joining each
batch, a slack-sink posting the result; disconnect_all once idle for a second."""
import sys
import threading

import ray

import eventray.compat.rayvens as rayvens

slack_channel, slack_webhook, run_mode = sys.argv[1:4]

ray.init()
rayvens.init(mode=run_mode)

stream = rayvens.Stream('slack', batch_size=2)


@ray.remote
def batching_operator(incoming_events):
    return " ".join(incoming_events)


sink_config = dict(kind='slack-sink',
                   route='/toslack',
                   channel=slack_channel,
                   webhook_url=slack_webhook)
sink = stream.add_sink(sink_config)
stream.add_operator(batching_operator)
stream >> (lambda text: print('sent', text))

stream << "Hello"
stream << "World"
stream << "Hello"
stream << "Mars"
stream << "Hello"
stream << "Jupiter"
stream << "Bye"

stream.disconnect_all(after_idle_for=1)
print('sink', sink, 'events', stream.event_count())
print('threads left', [t.name for t in threading.enumerate() if t.name.startswith('eventray')])
