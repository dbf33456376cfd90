"""The top layer: the bus and ``er.connect``. Imports any layer below it, never ``spi``
or a transport (transports are found through the registry)."""
