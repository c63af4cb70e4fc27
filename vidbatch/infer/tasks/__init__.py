"""The task registry; the built-in tasks (one module each, importing torch) are imported on first lookup, so that
importing this package, listing task names or reading a cached task's metadata imports no torch."""
from vidbatch.infer.tasks.registry import (
    BUILTIN_TASKS,
    TASKS,
    ClipTask,
    TaskInfo,
    frame_spec_for,
    get_task,
    register_task,
    task_info,
    task_output_fields,
    task_stacks,
)

__all__ = [
    "BUILTIN_TASKS", "TASKS", "ClipTask", "TaskInfo", "frame_spec_for", "get_task", "register_task", "task_info",
    "task_output_fields", "task_stacks",
]
