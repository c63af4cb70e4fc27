"""A registry of plugin classes by name (torchvision's model registry shape), shared by the tasks, the shot
detectors and the head kinds: a plugin registers with a decorator; lookups name what is known on a miss."""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(dict[str, T], Generic[T]):
    """name -> class. `what` words the errors ("task", "shot detector"); `attr` is the class attribute that gets
    the registered name; `missing` is the exception an unknown name raises."""

    def __init__(self, what: str, attr: str = "name", missing: type[Exception] = KeyError) -> None:
        super().__init__()
        self.what, self.attr, self.missing = what, attr, missing

    def register(self, name: str) -> Callable[[T], T]:
        def add(cls: T) -> T:
            if name in self:
                raise ValueError(f"{self.what} {name!r} registered twice")
            setattr(cls, self.attr, name)
            self[name] = cls
            return cls

        return add

    def lookup(self, name: str) -> T:
        try:
            return self[name]
        except KeyError:
            raise self.missing(f"unknown {self.what} {name!r}; known: {sorted(self)}") from None
