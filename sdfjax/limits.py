"""Time and memory limits for the work on one shape, so one huge or pathological mesh fails alone.

    with limits.shape_limits("chair_0001", seconds=600, memory_mb=8192):
        ...  # raises limits.LimitExceeded naming the shape and the limit it went over

Time: a real-time interval timer (SIGALRM) interrupts the Python code running when it
expires; native code that never returns to Python is not interrupted (preprocessing's
worker processes are, by the pool, killed and reported when they die). Memory: the
process's address space (RLIMIT_AS) may grow by at most `memory_mb` while the block runs,
so an allocation past it raises MemoryError, reported as the limit it went over. Both are
restored when the block ends. A limit of 0 is none; outside the main thread (where signals
cannot be used) only the memory limit applies.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import threading

from sdfjax import errors


class LimitExceeded(errors.DataError):
    """One shape went over its time or memory limit."""


def _address_space_bytes() -> int:
    """The process's current virtual memory size (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


@contextlib.contextmanager
def shape_limits(name: str, seconds: float = 0.0, memory_mb: int = 0):
    """Runs the block under the limits (see the module docstring); LimitExceeded names `name` and the limit."""
    timed = seconds > 0 and threading.current_thread() is threading.main_thread()
    bounded = memory_mb > 0 and _address_space_bytes() > 0

    def expired(signum, frame):
        raise LimitExceeded(f"{name}: over the {seconds:g} s time limit per shape")

    if timed:
        previous_handler = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    if bounded:
        previous_limit = resource.getrlimit(resource.RLIMIT_AS)
        cap = _address_space_bytes() + memory_mb * 2**20
        if previous_limit[1] != resource.RLIM_INFINITY:
            cap = min(cap, previous_limit[1])
        resource.setrlimit(resource.RLIMIT_AS, (cap, previous_limit[1]))
    try:
        yield
    except MemoryError as e:
        if not bounded:
            raise
        raise LimitExceeded(f"{name}: over the {memory_mb} MB memory limit per shape") from e
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_handler)
        if bounded:
            resource.setrlimit(resource.RLIMIT_AS, previous_limit)
