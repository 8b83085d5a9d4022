"""Where corpus work runs: executors (local processes or a Ray cluster), input splits, sharded outputs.

A stage hands the executor picklable tasks and a module-level task function; the executor returns
results in task order, whatever the engine or the number of workers, so output bytes never depend on
where the work ran. validate, convert, clean, bucket, stats, render and train-vocab run on it
(tasks.py: the record-parallel task over steps; items.py: the same for stages whose results are not
records; shards.py: numbered output parts with a manifest). Global steps (exact and near-dup joins,
bucket plans, SentencePiece training) run on the driver.
"""

from corpuskit.engine.executor import ENGINES, EngineError, Executor, LocalExecutor, make_executor

__all__ = ["ENGINES", "EngineError", "Executor", "LocalExecutor", "make_executor"]
