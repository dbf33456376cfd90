"""Stream operators: map, filter, key_by, reduce, sinks, windows.

Imports ``_runtime`` and ``_model``."""
