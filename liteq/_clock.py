"""Clocks: wall time for etas and results, a boot clock for leases.

Leases are measured on ``CLOCK_BOOTTIME`` where Linux has it: every process on the host
shares it and it does not jump when the wall clock is set, so stepping the system clock
never breaks a lease. It restarts at each boot, so a lease records nothing beyond the
boot it was taken in (``boot_id()``); leases from an earlier boot count as expired.
Elsewhere leases fall back to wall time.

Transports call ``_clock.lease_clock()`` and ``_clock.wall()`` through this module, so
tests replace one attribute to move time for every part at once.
"""

from __future__ import annotations

import time

wall = time.time

if hasattr(time, "CLOCK_BOOTTIME"):
    _BOOTTIME = time.CLOCK_BOOTTIME

    def lease_clock() -> float:
        """Seconds on the host-wide boot clock."""
        return time.clock_gettime(_BOOTTIME)

else:  # pragma: no cover - not Linux
    lease_clock = time.time


def boot_id() -> str:
    """An identifier of this boot of the machine ("wall" where leases use wall time)."""
    if lease_clock is time.time:  # pragma: no cover - not Linux
        return "wall"
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:  # pragma: no cover - Linux without procfs
        return "unknown"


__all__ = ["boot_id", "lease_clock", "wall"]
