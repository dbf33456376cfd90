"""Streams and jobs: the Stream API and the ``Job`` handle.

Imports every layer below it (``_topics`` down to ``_model``) and ``_connectors``."""
