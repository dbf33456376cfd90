import ray
import eventray.compat.rayvens as rayvens

ray.init()
client = rayvens.Client()

topic = client.create_topic('example')

topic >> print

topic << 'hello' << 'world'
