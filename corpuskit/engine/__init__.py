"""Where corpus work runs: executors (local processes or a Ray cluster), input splits, sharded outputs.

A stage hands the executor picklable tasks and a module-level task function; the executor returns
results in task order, whatever the engine or the number of workers, so output bytes never depend on
where the work ran. Steps (the record-level logic) know nothing of this package.
"""

from corpuskit.engine.executor import ENGINES, EngineError, Executor, LocalExecutor, make_executor, worker_cache

__all__ = ["ENGINES", "EngineError", "Executor", "LocalExecutor", "make_executor", "worker_cache"]
