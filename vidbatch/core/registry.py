"""A registry of plugin classes by name (torchvision's model registry shape), shared by the tasks, the shot
detectors and the head kinds: a plugin registers with a decorator; lookups name what is known on a miss."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(dict[str, T], Generic[T]):
    """name -> class. `what` words the errors ("task", "shot detector"); `attr` is the class attribute that gets
    the registered name; `missing` is the exception an unknown name raises. `builtin`: name -> the module that
    registers it, imported on first lookup (so that listing or validating names imports no plugin's heavy
    dependencies, e.g. torch)."""

    def __init__(
        self, what: str, attr: str = "name", missing: type[Exception] = KeyError, builtin: Mapping[str, str] | None = None
    ) -> None:
        super().__init__()
        self.what, self.attr, self.missing = what, attr, missing
        self.builtin = dict(builtin or {})

    def known(self) -> list[str]:
        """Every name a lookup can find, imported or not."""
        return sorted(set(self) | set(self.builtin))

    def register(self, name: str) -> Callable[[T], T]:
        def add(cls: T) -> T:
            if name in self:
                raise ValueError(f"{self.what} {name!r} registered twice")
            setattr(cls, self.attr, name)
            self[name] = cls
            return cls

        return add

    def lookup(self, name: str) -> T:
        if name not in self and name in self.builtin:
            importlib.import_module(self.builtin[name])
        try:
            return self[name]
        except KeyError:
            raise self.missing(f"unknown {self.what} {name!r}; known: {self.known()}") from None
