"""`python -m exporter`: calibrate, QAT, ONNX Q/DQ export and the one-command `build` pipeline."""

from .tasks import TASKS, Task, get_task

__all__ = ["TASKS", "Task", "get_task"]
