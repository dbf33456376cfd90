"""Connector base classes, the polling source and the plugin registry.

Imports only ``_model``."""
