"""Process lifecycle flags read by ``/readyz``: started (lifespan done) and draining (SIGTERM).

Module-level state is deliberate: the worker's signal handler and the app run in the same
process and need no other channel.

``drain_ended`` callbacks run in the worker's event loop when the drain delay
(``APP_SHUTDOWN_DELAY_SECONDS``) is over, just before the listener closes: the platform
closes its open WebSockets there (code 1001), since uvicorn's own shutdown would otherwise
wait for them for the whole graceful timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Lifecycle:
    started: bool = False
    draining: bool = False
    drain_ended: list[Callable[[], None]] = field(default_factory=list)

    def end_drain(self) -> None:
        """Called by the worker once the drain delay has passed (``worker.DrainingServer``)."""
        for callback in list(self.drain_ended):
            callback()


state = Lifecycle()
