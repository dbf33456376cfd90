"""Compatibility layers: programs written for the systems eventray replaces run on it with
one changed import.

- ``eventray.compat.rayvens``: Rayvens' synchronous API (``Client``, topics, ``Stream``).
- ``eventray.compat.ray_streaming``: Ray Streaming's ``StreamingContext`` and ``DataStream``.

Both are built on eventray's public API only, and both need Ray (``pip install eventray[ray]``).
"""
