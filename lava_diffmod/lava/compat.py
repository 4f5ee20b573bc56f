"""Python 3.11 import shim for lava-nc 0.10.0 (spec: LOIHI.md §1.3).

In ``lava.magma.compiler.var_model`` three dataclasses use a ``ByteEncoder`` instance as
the class-level default of 8 fields. Python 3.11 rejects unhashable defaults, so importing
almost anything from lava raises ``ValueError: mutable default ...``.

:func:`install` puts a meta-path finder in front of the import system. It wraps the
loader of that one module only: while the module body runs, ``dataclasses.dataclass`` is
replaced by a wrapper that turns each unhashable class-level default into a
``default_factory`` returning a deep copy; the original decorator is restored afterwards,
also on error. Installed files are never touched. Lava's forked workers inherit the
patched classes.

Also a pytest plugin (``pytest -p lava_diffmod.lava.compat``), so Lava's own test suite
can run against it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.abc
import importlib.util
import logging
import sys

TARGET = "lava.magma.compiler.var_model"

_log = logging.getLogger(__name__)


def _factory_defaults(cls: type) -> type:
    """Replace unhashable class-level defaults of ``cls`` by deep-copy default factories."""
    for name in cls.__dict__.get("__annotations__", {}):
        default = cls.__dict__.get(name, dataclasses.MISSING)
        if isinstance(default, dataclasses.Field) or type(default).__hash__ is not None:
            continue  # MISSING and every hashable default are accepted by dataclasses
        factory = functools.partial(copy.deepcopy, default)
        setattr(cls, name, dataclasses.field(default_factory=factory))
    return cls


def _patched(dataclass):
    """Wrap the ``dataclass`` decorator (both ``@dataclass`` and ``@dataclass(...)`` forms)."""

    @functools.wraps(dataclass)
    def wrapper(cls=None, /, **kwargs):
        if cls is None:
            return lambda c: dataclass(_factory_defaults(c), **kwargs)
        return dataclass(_factory_defaults(cls), **kwargs)

    return wrapper


class _PatchingLoader(importlib.abc.Loader):
    """Runs the wrapped loader's module body with the patched ``dataclasses.dataclass``."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        original = dataclasses.dataclass
        dataclasses.dataclass = _patched(original)
        try:
            self._loader.exec_module(module)
        finally:
            dataclasses.dataclass = original

    def __getattr__(self, name: str):
        return getattr(self._loader, name)  # get_source, get_filename, ... for tracebacks


class _Finder(importlib.abc.MetaPathFinder):
    """Finds :data:`TARGET` through the other finders and wraps its loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def install() -> bool:
    """Activate the shim where it is needed (idempotent); return whether it is active."""
    if sys.version_info < (3, 11):
        _log.debug("lava compat shim not needed on Python < 3.11")
        return False
    if any(isinstance(finder, _Finder) for finder in sys.meta_path):
        return True
    if TARGET in sys.modules:
        _log.debug("lava compat shim not installed: %s is already imported", TARGET)
        return False
    if importlib.util.find_spec("lava") is None:
        _log.debug("lava compat shim not installed: lava is not installed")
        return False
    sys.meta_path.insert(0, _Finder())
    return True


def pytest_configure(config) -> None:
    """pytest hook: activate the shim before any test module imports lava."""
    install()
