"""A Rayvens program and a Ray Streaming program on eventray: one changed import each.

    python examples/from_rayvens.py
"""

import ray

import eventray.compat.rayvens as rayvens  # was: import rayvens
from eventray.compat.ray_streaming import StreamingContext  # was: from ray.streaming import ...

# Rayvens' hello, unchanged
ray.init()
client = rayvens.Client()
topic = client.create_topic("example")
topic >> print
topic << "hello" << "world"

# Rayvens 0.7's stream: events in batches of two through an operator to a subscriber
stream = rayvens.Stream("words", batch_size=2, operator=lambda batch: " ".join(batch))
stream >> print
stream << "to" << "be" << "or" << "not"
stream.disconnect_all(after_idle_for=0.5)

# Ray Streaming, unchanged: the job runs to its end before submit returns
totals = {}
ctx = StreamingContext.Builder().build()
ctx.from_values("to", "be", "or", "not", "to", "be") \
    .map(lambda word: (word, 1)) \
    .key_by(lambda pair: pair[0]) \
    .reduce(lambda old, new: (old[0], old[1] + new[1])) \
    .sink(lambda pair: totals.update([pair]))
ctx.submit("counts")
print("counts", sorted(totals.items()))
