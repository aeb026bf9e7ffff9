"""Tasks: batch layout, loss, online step loss and metrics (see :mod:`.base`)."""
from .base import MeanMetric, Metrics, OnlineLoss, Task
from .registry import available_tasks, get_task, register_task, resolve_task

__all__ = ["Task", "Metrics", "MeanMetric", "OnlineLoss", "available_tasks", "get_task",
           "register_task", "resolve_task"]
