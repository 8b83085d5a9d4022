"""Executors: run task functions over a stream of tasks and yield results in task order.

`local` uses processes on this machine (one in-process worker for `--workers 1`); `ray` sends the same
tasks to a Ray cluster (`--ray-address`) or to a Ray instance started for the command. Both keep a
bounded number of tasks in flight, so memory does not grow with the input, and both yield in order, so
results never depend on the engine or the worker count.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
import os
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from corpuskit.errors import CorpusError
from corpuskit.pool import worker_pool

ENGINES = ("local", "ray")


class EngineError(CorpusError):
    """The engine cannot run (Ray missing, cluster unreachable): a one-line message for the user."""


class Executor(ABC):
    """Ordered map over tasks. Subclasses implement `_submit` and `_result`."""

    name = "?"
    workers = 1

    def map(self, fn: Callable[[Any], Any], tasks: Iterable[Any], in_flight: int | None = None) -> Iterator[Any]:
        limit = in_flight or 2 * self.workers
        pending: deque = deque()
        for task in tasks:
            pending.append(self._submit(fn, task))
            if len(pending) >= limit:
                yield self._result(pending.popleft())
        while pending:
            yield self._result(pending.popleft())

    @abstractmethod
    def _submit(self, fn, task):
        """Start `fn(task)`; a handle for `_result`."""

    @abstractmethod
    def _result(self, handle):
        """The value of a started task (waits for it)."""

    def close(self) -> None:
        pass

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        self.close()

    def abort(self) -> None:
        self.close()


class LocalExecutor(Executor):
    """Processes on this machine; `workers=1` runs every task in this process (no pickling)."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._pool = None
        self._stack = contextlib.ExitStack()
        if self.workers > 1:  # workers ignore SIGINT: Ctrl-C gives one line, no tracebacks (corpuskit.pool)
            self._pool = self._stack.enter_context(worker_pool(self.workers))

    def _submit(self, fn, task):
        if self._pool is None:
            return (fn, task)
        return self._pool.apply_async(fn, (task,))

    def _result(self, handle):
        if self._pool is None:
            fn, task = handle
            return fn(task)
        return handle.get()

    def close(self) -> None:
        self._pool = None
        self._stack.close()


class RayExecutor(Executor):
    """Ray tasks (retried when a worker dies). Joins `address` (`auto` or HOST:PORT) or starts a local
    Ray instance that lives as long as the command."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, max_retries: int = 3):
        try:
            import ray
        except ImportError:
            raise EngineError("--engine ray needs Ray: pip install 'corpuskit[ray]'") from None
        self._ray = ray
        self._started = False
        self.max_retries = max_retries
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address is None:
                kwargs.update(address="local", num_cpus=workers or os.cpu_count() or 1)  # a fresh instance, never a cluster found by chance
            else:
                kwargs["address"] = address
            # ship corpuskit itself to the workers only when they cannot import it (same code everywhere)
            try:
                with _quiet_token_notice(address is None):
                    ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise EngineError(f"cannot start or join Ray ({address or 'local'}): {e}") from None
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, workers or cpus)
        self._remote: dict[Callable, Any] = {}

    def _submit(self, fn, task):
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=self.max_retries)(fn)
        return remote.remote(task)

    def _result(self, handle):
        from ray.exceptions import RayTaskError

        try:
            return self._ray.get(handle)
        except RayTaskError as e:  # re-raise the task's own exception (InputError, ...) as the local engine does
            cause = e.as_instanceof_cause()
            raise (cause.cause if getattr(cause, "cause", None) is not None else cause) from None

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


@contextlib.contextmanager
def _quiet_token_notice(quiet: bool):
    """A Ray instance started for one command gets token authentication on by default and says so on
    stderr every run; that line is noise in a CLI, so it is held back there (not for a joined cluster)."""
    import logging

    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = log.level
    if quiet:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def make_executor(engine: str = "local", workers: int = 1, ray_address: str | None = None) -> Executor:
    if engine == "local":
        if ray_address:
            raise EngineError("--ray-address needs --engine ray")
        return LocalExecutor(workers)
    if engine == "ray":
        return RayExecutor(workers if workers > 1 else None, ray_address)
    raise EngineError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
