"""Garbage collection on the GUI thread only.

Python's cyclic garbage collector runs in whichever thread happens to allocate when a threshold
is crossed. If that is a worker thread (the database jobs, the Ray driver importing pandas) and
the garbage holds a Qt widget, the widget's C++ destructor runs off the GUI thread: Qt forbids
it, and PySide6 can deadlock there waiting for the GIL (seen: a QMenu freed by a collection
inside ``import pandas`` on the Ray thread hung the app). So automatic collection is switched
off and a timer on the GUI thread collects instead, the pattern PyQt and PySide apps use.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

__all__ = ["install_gui_thread_gc"]

_guard: "_GcGuard | None" = None


class _GcGuard(QObject):
    def __init__(self, interval_ms: int) -> None:
        super().__init__()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.collect)
        self.timer.start()

    def collect(self) -> None:
        # the cheap generation every tick; older ones when their thresholds say so, as gc would
        g0, g1, g2 = gc.get_count()
        t0, t1, t2 = gc.get_threshold()
        if g2 > t2:
            gc.collect(2)
        elif g1 > t1:
            gc.collect(1)
        elif g0 > t0:
            gc.collect(0)


def install_gui_thread_gc(interval_ms: int = 500) -> None:
    """Switch automatic collection off and collect on the GUI thread every ``interval_ms``.
    Call once the QApplication exists, from the GUI thread; later calls do nothing."""
    global _guard
    if _guard is not None:
        return
    gc.disable()
    _guard = _GcGuard(interval_ms)
