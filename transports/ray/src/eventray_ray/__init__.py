"""eventray's Ray transport: ``er.connect("ray")`` (the default) or ``er.connect("ray://...")``.

Topics are named async actors, stream stages are named async actors ``<job>.<stage>.<index>``
in the namespace ``eventray``, and Ray actors, actor methods and remote functions can
subscribe to topics.
"""

import os

# Ray reads this when it is imported: set before Ray is, every process of a local Ray that
# eventray starts binds to 127.0.0.1 (see _connection.start_local for when Ray came first).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from ._options import RayOptions
from ._transport import RayTransport

__all__ = ["RayOptions", "RayTransport"]
