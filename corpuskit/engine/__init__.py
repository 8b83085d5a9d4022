"""Where corpus work runs: executors (local processes or a Ray cluster), input splits, sharded outputs.

A stage hands the executor picklable tasks and a module-level task function; the executor returns
results in task order, whatever the engine or the number of workers, so output bytes never depend on
where the work ran. `validate` and `convert` run on it (tasks.py: the record-parallel task over
steps, shards.py: numbered output parts with a manifest); the other corpus commands move onto it next.
"""

from corpuskit.engine.executor import ENGINES, EngineError, Executor, LocalExecutor, make_executor

__all__ = ["ENGINES", "EngineError", "Executor", "LocalExecutor", "make_executor"]
