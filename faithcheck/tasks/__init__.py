"""Task registry: `modular`, `gsm8k`, `bbh:<subtask>`, `mc:<path>`."""

from __future__ import annotations

from faithcheck.errors import BadInput
from faithcheck.registry import Registry, UnknownNameError
from faithcheck.tasks.base import LoadResult, SkippedRow, Task, TaskOptions

tasks = Registry("task", "faithcheck.tasks", ("modular", "gsm8k", "bbh", "mc"))


def get_task(spec: str) -> Task:
    """Build a task from its string (`name` or `name:argument`)."""
    name, _, arg = spec.partition(":")
    try:
        entry = tasks.get(name)
    except UnknownNameError as e:
        raise BadInput(f"--task: {e}") from None
    return entry.factory(arg) if arg else entry.factory()


def task_options(task_args: list[str] | tuple[str, ...]) -> TaskOptions:
    """`--task-arg KEY=VALUE` strings as validated options (an unknown key names the flag)."""
    from faithcheck.backends.base import parse_model_args

    return parse_model_args(TaskOptions, list(task_args), flag="--task-arg")


def configure_task(task: Task, options: TaskOptions, backend: object) -> Task:
    """Fit the task's budgets and prompting to the model (see `TaskOptions`): a backend is a
    chat model when it renders a chat template (`chat`, or its text's `chat` for hf) and takes
    earlier turns when it says so (`takes_turns`)."""
    chat = getattr(backend, "chat", None)
    if chat is None:
        chat = getattr(getattr(backend, "text", None), "chat", False)
    task.configure(options, chat=bool(chat), takes_turns=bool(getattr(backend, "takes_turns", False)))
    return task


__all__ = ["LoadResult", "SkippedRow", "Task", "TaskOptions", "configure_task", "get_task", "task_options", "tasks"]
