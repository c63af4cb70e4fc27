"""Which failures are the input's and which are the run's.

Errors are data only when an input caused them: a video that cannot be probed or decoded, a clip a model cannot
take. A bug, a broken GPU or memory that runs out at the smallest batch would fail every input the same way; as
error rows they would mark every video failed and quarantine it after a few nights. Those end the run instead
(exit 1): fixed and started again, it resumes where it stopped.
"""
from __future__ import annotations

import sys

from vidbatch.core.errors import ErrorRow

# failures of the code, never of a video; PyAV reports bad input as its own FFmpegError types
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError, AttributeError, NameError, ImportError, AssertionError, NotImplementedError, SyntaxError, RecursionError,
)
# torch >= 2.8 raises CUDA runtime errors as torch.AcceleratorError; older releases, CUDA libraries and TorchScript
# (which wraps them once more) raise plain RuntimeErrors or torch.jit.Error, told apart by these words
_CUDA_MESSAGES = ("CUDA error", "CUDA driver error", "cuDNN error", "CUBLAS_STATUS", "CUDNN_STATUS", "CUFFT_")


class SystemicError(RuntimeError):
    """A failure that no input caused: it ends the run instead of becoming error rows."""


class DeviceUnavailable(SystemicError):
    """A process was given a GPU that torch cannot use."""


def _torch():  # the torch module, or None
    """torch only where it is already imported: a process that never imported it (a decode task) can raise no
    torch error, and importing it there would cost seconds and hundreds of MB per worker."""
    return sys.modules.get("torch")


def is_device_fault(exc: BaseException) -> bool:
    """A CUDA runtime error: the process's CUDA context may be unusable from now on (sticky errors)."""
    torch = _torch()
    if torch is None:
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)
    return (accelerator_error is not None and isinstance(exc, accelerator_error)) or (
        isinstance(exc, (RuntimeError, torch.jit.Error)) and any(m in str(exc) for m in _CUDA_MESSAGES)
    )


def is_systemic(exc: BaseException) -> bool:
    """True for failures that would repeat on any input. Out of memory counts: callers that can shrink their batch
    catch it first and let it through only at the smallest one."""
    torch = _torch()
    out_of_memory = (torch.OutOfMemoryError,) if torch is not None else ()
    return isinstance(exc, (SystemicError, *out_of_memory, *PROGRAMMING_ERRORS)) or is_device_fault(exc)


def common_failure(errors: list[ErrorRow], attempted: int) -> SystemicError | None:
    """Every one of `attempted` items failed with one error type, and they come from several videos: the model or
    the code fails, not the inputs (one broken video failing throughout stays that video's problem)."""
    videos = {e.video_id for e in errors}
    if len(errors) < max(2, attempted) or len(videos) < 2 or len({e.error_type for e in errors}) > 1:
        return None
    return SystemicError(
        f"all {len(errors)} items of a batch from {len(videos)} videos failed with {errors[0].error_type}: "
        f"{errors[0].message}"
    )
