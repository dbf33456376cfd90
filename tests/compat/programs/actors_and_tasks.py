"""Rayvens' actor and task examples together: actor methods, an actor taking ingest(event),
and Ray tasks as subscribers. They write what they get to files in the folder sys.argv[1]
(a Ray worker's prints reach the driver's output only eventually)."""
import os
import sys

import ray

import eventray.compat.rayvens as rayvens

out = sys.argv[1]
ray.init()
client = rayvens.Client()
topic = client.Topic('numbers')


@ray.remote
class Accumulator:
    def __init__(self, name):
        self.name = name
        self.value = 0

    def add(self, delta):
        self.value += delta
        with open(os.path.join(out, self.name), 'a') as f:
            f.write(f'{self.name} = {self.value}\n')


@ray.remote
class Recorder:
    def ingest(self, event):
        with open(os.path.join(out, 'recorder'), 'a') as f:
            f.write(f'{event}\n')


@ray.remote
def handler(event):
    with open(os.path.join(out, f'task-{event}'), 'w') as f:
        f.write(f'task received {event}\n')


acc1 = Accumulator.remote('actor1')
acc2 = Accumulator.remote('actor2')
topic.subscribe.remote(acc1.add.remote)
topic.subscribe.remote(acc2.add)
topic >> Recorder.remote()
topic.subscribe.remote(handler.remote)

for i in range(10):
    topic.publish.remote(i)
