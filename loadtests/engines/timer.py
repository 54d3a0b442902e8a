"""A deadline timer with microsecond precision for an asyncio loop: Linux's timerfd.

uvloop's timers tick in milliseconds, so a send scheduled 0.3 ms ahead would go out up
to a millisecond late, and spinning instead would burn the generator's core (and make
its CPU share useless as a sign that it is out of breath). A timerfd armed at an
absolute CLOCK_MONOTONIC deadline becomes readable at that moment; the loop watches it
like any socket and wakes within the kernel's timer slack and the CPU's wake-up from
idle (about 30 µs in all on our machines; the generator wakes a little early and spins
the rest when it has nothing else to wait for, see native_generator.py).
`time.monotonic()` reads the same clock. Python exposes timerfd only from 3.13, so this
calls libc directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

CLOCK_MONOTONIC = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.timerfd_settime.argtypes = [
    ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p,
]  # fmt: skip


class DeadlineTimer:
    """One timerfd: `arm(at)` makes `fd` readable at monotonic time `at` (at once if past)."""

    def __init__(self) -> None:
        fd = _libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd: int = fd
        self._spec = _Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)

    def arm(self, at: float) -> None:
        # A zero it_value would disarm the timer: a deadline in the past still fires.
        nanoseconds = max(1, int(at * 1e9))
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(nanoseconds, 1_000_000_000)
        if _libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, self._spec_ref, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def clear(self) -> None:
        """Consume the expiry, so the fd stops being readable until armed again."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)

    def close(self) -> None:
        os.close(self.fd)
