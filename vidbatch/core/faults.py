"""Which failures are the input's and which are the run's.

Errors are data only when an input caused them: a video that cannot be probed or decoded, a clip a model cannot
take. A bug, a broken GPU or memory that runs out at the smallest batch would fail every input the same way; as
error rows they would mark every video failed and quarantine it after a few nights. Those end the run instead
(exit 1): fixed and started again, it resumes where it stopped.
"""
from __future__ import annotations

import torch

# failures of the code, never of a video; PyAV reports bad input as its own FFmpegError types
PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError, AttributeError, NameError, ImportError, AssertionError, NotImplementedError, SyntaxError, RecursionError,
)
# torch raises plain RuntimeErrors for some CUDA library failures; these prefixes are theirs
_CUDA_MESSAGES = ("CUDA error", "CUDA driver error", "cuDNN error", "CUBLAS_STATUS", "CUDNN_STATUS", "CUFFT_")


class SystemicError(RuntimeError):
    """A failure that no input caused: it ends the run instead of becoming error rows."""


class DeviceUnavailable(SystemicError):
    """A process was given a GPU that torch cannot use."""


def is_device_fault(exc: BaseException) -> bool:
    """A CUDA runtime error: the process's CUDA context may be unusable from now on (sticky errors)."""
    return isinstance(exc, torch.AcceleratorError) or (
        isinstance(exc, RuntimeError) and str(exc).startswith(_CUDA_MESSAGES)
    )


def is_systemic(exc: BaseException) -> bool:
    """True for failures that would repeat on any input. Out of memory counts: callers that can shrink their batch
    catch it first and let it through only at the smallest one."""
    return isinstance(exc, (SystemicError, torch.OutOfMemoryError, *PROGRAMMING_ERRORS)) or is_device_fault(exc)


def raise_if_systemic(exc: BaseException) -> None:
    """For an `except` that turns input failures into error rows: the run's own failures go on up."""
    if is_systemic(exc):
        raise exc


def common_failure(errors: list[BaseException], video_ids: list[str]) -> SystemicError | None:
    """Every item of a batch failed with one error type, and the items come from several videos: the model or the
    code fails, not the inputs (a single broken video failing throughout stays that video's problem)."""
    if len(errors) < 2 or len(errors) != len(video_ids) or len(set(video_ids)) < 2:
        return None
    kinds = {type(e) for e in errors}
    if len(kinds) > 1:
        return None
    first = errors[0]
    return SystemicError(
        f"every item of a batch from {len(set(video_ids))} videos failed with {type(first).__name__}: {first}"
    )
