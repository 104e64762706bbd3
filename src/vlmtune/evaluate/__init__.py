"""Evaluation: batched generation (``generate``), scoring per task (``run``, ``scoring``),
the constant-answer prior (``prior``) and one-prompt predictions (``predict``).

Example:
    >>> from vlmtune.evaluate import evaluate
    >>> metrics = evaluate(cfg)  # doctest: +SKIP
"""

from vlmtune.evaluate.run import evaluate

__all__ = ["evaluate"]
