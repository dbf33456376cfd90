"""Rayvens 0.7's multitask example: a Ray task operator starts three tasks, each of which
publishes to the stream's slack-sink through the context."""
import sys

import ray

import eventray.compat.rayvens as rayvens

slack_channel, slack_webhook, run_mode = sys.argv[1:4]

ray.init()
rayvens.init(mode=run_mode)

stream = rayvens.Stream('slack')


@ray.remote
def sub_task(context, intermediate_data):
    context.publish("sub-task " + intermediate_data)


@ray.remote
def multi_part_task(context, incoming_event):
    for i in range(3):
        sub_task.remote(context, "sub-event" + str(i))


sink_config = dict(kind='slack-sink',
                   route='/toslack',
                   channel=slack_channel,
                   webhook_url=slack_webhook)
sink = stream.add_sink(sink_config)
stream.add_multitask_operator(multi_part_task)

stream << f'Sending message to Slack sink in run mode {run_mode}.'

stream.disconnect_all(after_idle_for=3)
