"""The stage runtime: bounded channels (and the handover queue of server-style sources), task
ownership, plans, readers, the operator interface and the stage loop, and in-process jobs.
Imports only ``_model``."""
