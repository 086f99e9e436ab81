"""What a live process holds open, read from /proc without racing its own closes."""

from __future__ import annotations

import os


def open_fd_targets(pid: int) -> list[str]:
    """The targets of ``pid``'s open file descriptors.

    A descriptor listed by ``/proc/PID/fd`` may be closed before it is read (a worker closes
    sockets and files all the time): those are skipped rather than failing the caller.
    """
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:  # closed between the listing and the read
            continue
    return targets
