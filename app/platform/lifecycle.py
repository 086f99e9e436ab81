"""Process lifecycle flags read by ``/readyz``: started (lifespan done) and draining (SIGTERM).

Module-level state is deliberate: the worker's signal handler and the app run in the same
process and need no other channel.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Lifecycle:
    started: bool = False
    draining: bool = False


state = Lifecycle()
