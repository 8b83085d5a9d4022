"""Process pools that stop cleanly on Ctrl-C.

A terminal sends SIGINT to the whole process group, so without care every worker prints its own
KeyboardInterrupt traceback. Here workers ignore SIGINT from the moment they exist (the parent
ignores it while it forks or spawns them, and their initializer ignores it again), so only the
parent sees the interrupt; leaving the `with` block on it terminates the pool, and the command's
error handler prints one line and exits 130.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from typing import Callable, Iterator


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _init(initializer: Callable | None, initargs: tuple) -> None:
    _ignore_sigint()
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def worker_pool(processes: int, initializer: Callable | None = None, initargs: tuple = (),
                start_method: str | None = None) -> Iterator[multiprocessing.pool.Pool]:
    """A multiprocessing Pool whose workers ignore SIGINT; terminated (and joined) on exit."""
    ctx = multiprocessing.get_context(start_method)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:  # a fork inherits SIG_IGN, and a spawned interpreter keeps an inherited SIG_IGN
        pool = ctx.Pool(processes, _init, (initializer, initargs))
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    try:
        yield pool
    finally:
        _terminate(pool)


def _terminate(pool: multiprocessing.pool.Pool) -> None:
    """pool.terminate() + join(), which alone can hang for good: when the pool's task thread is half-way
    through writing a task bigger than the pipe's buffer (a batch of records) as the workers are
    killed, nobody reads the rest and the join waits on that thread. So once every worker is gone,
    what is left in the pipe is read off here until terminate returns."""
    stopper = threading.Thread(target=lambda: (pool.terminate(), pool.join()), daemon=True)
    stopper.start()
    reader = getattr(getattr(pool, "_inqueue", None), "_reader", None)
    workers = getattr(pool, "_pool", None) or []
    while stopper.is_alive():
        stopper.join(0.05)
        if reader is None or not stopper.is_alive() or any(w.exitcode is None for w in workers):
            continue  # until the workers are gone they read the pipe themselves (and terminate drains it)
        try:
            while reader.poll():
                reader.recv_bytes()
        except (OSError, EOFError):
            break
