"""Topics: subscribers and processors, delivery, the topic and its iterators, and the
``Transport``/``TopicBackend`` protocols. Imports ``_operators``, ``_runtime``, ``_model``."""
