"""Task registry: `modular`, `gsm8k`, `bbh:<subtask>`, `mc:<path>`."""

from __future__ import annotations

from faithcheck.errors import BadInput
from faithcheck.registry import Registry, UnknownNameError
from faithcheck.tasks.base import LoadResult, SkippedRow, Task

tasks = Registry("task", "faithcheck.tasks", ("modular", "gsm8k", "bbh", "mc"))


def get_task(spec: str) -> Task:
    """Build a task from its string (`name` or `name:argument`)."""
    name, _, arg = spec.partition(":")
    try:
        entry = tasks.get(name)
    except UnknownNameError as e:
        raise BadInput(f"--task: {e}") from None
    return entry.factory(arg) if arg else entry.factory()


__all__ = ["LoadResult", "SkippedRow", "Task", "get_task", "tasks"]
