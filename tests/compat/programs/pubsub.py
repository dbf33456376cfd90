"""Rayvens' pubsub example: two function subscribers, events published with .remote."""
import ray

import eventray.compat.rayvens as rayvens

ray.init()
client = rayvens.Client()
topic = client.Topic('example')


def handler1(event):
    print('handler1 received', event)


def handler2(event):
    print('handler2 received', event)


topic.subscribe.remote(handler1)
topic.subscribe.remote(handler2)

for i in range(10):
    topic.publish.remote(f'event {i}')
