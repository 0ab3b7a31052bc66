"""Tasks: what a problem is, how agents are prompted, how their answers are read and graded.

Light on purpose (no torch, no transformers; `datasets` only when a hub dataset is loaded), so the
debate client and the evaluator can use it without the training stack.
"""

from __future__ import annotations

from collections.abc import Collection

from .arithmetic import ArithmeticTask
from .base import DatasetError, Problem, PromptTemplates, Task
from .custom import CustomTask
from .equations import EquationsTask
from .gsm8k import Gsm8kTask
from .math import MathTask
from .mmlu import MmluTask

_TASKS: dict[str, type[Task]] = {
    task.name: task
    for task in (ArithmeticTask, Gsm8kTask, MathTask, MmluTask, CustomTask, EquationsTask)
}
TASK_NAMES = tuple(_TASKS)


def get_task(
    name: str, max_value: int | None = None, levels: Collection[int] | None = None
) -> Task:
    """The task `name`; `max_value` narrows the arithmetic task's range of values, `levels` the
    MATH task's difficulty levels."""
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)}")
    if max_value is not None:
        if name != ArithmeticTask.name:
            raise ValueError(f"max_value is only for the arithmetic task, not {name!r}")
        return ArithmeticTask(max_value)
    if levels is not None:
        if name != MathTask.name:
            raise ValueError(f"levels are only for the math task, not {name!r}")
        return MathTask(levels)
    return _TASKS[name]()


__all__ = ["TASK_NAMES", "DatasetError", "Problem", "PromptTemplates", "Task", "get_task"]
