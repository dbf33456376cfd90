"""Bottom layer: events, batches, errors and the protocols of what users pass in.

Imports nothing else of eventray."""
