"""The built-in tasks, registered on import; the registry API lives in `registry.py` (torchvision's models/_api.py
shape), which imports no task, so nothing imports back."""
from vidbatch.infer.tasks import action, classify, detect, embed, head, segment  # noqa: F401  (registers built-in tasks)
from vidbatch.infer.tasks.registry import (
    TASKS,
    ClipTask,
    frame_spec_for,
    get_task,
    register_task,
    task_output_fields,
    task_stacks,
)

__all__ = ["TASKS", "ClipTask", "frame_spec_for", "get_task", "register_task", "task_output_fields", "task_stacks"]
