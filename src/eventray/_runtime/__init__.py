"""The stage runtime: bounded channels, task ownership, plans, readers, the operator interface
and the stage loop, and in-process jobs. Imports only ``_model``."""
