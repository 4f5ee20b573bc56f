"""The Python 3.11 import shim for lava-nc 0.10.0 (LOIHI.md §1.3) and lazy lava imports."""

import dataclasses
import importlib.abc
import importlib.metadata
import importlib.util
import json
import logging
import subprocess
import sys
import textwrap
import types

import pytest

from lava_diffmod.lava import LavaUnavailableError, compat, lava_available, require_lava

below_312 = pytest.mark.skipif(sys.version_info >= (3, 12), reason="lava-nc 0.10: Python < 3.12")


def _run(code: str, cwd) -> str:
    """Run ``code`` in a fresh interpreter (outside the repository) and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def clean_meta_path(monkeypatch):
    """sys.meta_path without the shim's finder, restored afterwards."""
    kept = [f for f in sys.meta_path if not isinstance(f, compat._Finder)]
    monkeypatch.setattr(sys, "meta_path", kept)


def _finders() -> int:
    """How many shim finders sys.meta_path holds."""
    return sum(isinstance(f, compat._Finder) for f in sys.meta_path)


def test_import_does_not_import_lava(tmp_path):
    out = _run(
        """
        import json, sys
        import lava_diffmod, lava_diffmod.lava
        lava_diffmod.lava.lava_available()
        print(json.dumps([m for m in sys.modules if m == "lava" or m.startswith("lava.")]))
        """,
        tmp_path,
    )
    assert json.loads(out) == []


def _fake_versions(monkeypatch, **versions):
    """Make importlib.metadata report ``versions`` (name -> version, None: not installed)."""

    def version(name):
        if versions.get(name) is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(importlib.metadata, "version", version)


@pytest.mark.parametrize(
    "python, lava_nc, numpy, reason",
    [
        ((3, 12, 1), "0.10.0", "1.26.4", "Python >= 3.12"),
        ((3, 11, 7), None, "1.26.4", "lava-nc is not installed"),
        ((3, 11, 7), "0.10.0", "2.1.0", "numpy < 2"),
        ((3, 10, 13), "0.10.0", "1.26.4", ""),
    ],
)
def test_probe_reasons(python, lava_nc, numpy, reason, monkeypatch):
    monkeypatch.setattr(sys, "version_info", (*python, "final", 0))
    _fake_versions(monkeypatch, **{"lava-nc": lava_nc, "numpy": numpy})
    ok, why = lava_available()
    assert ok == (reason == "") and reason in why
    if ok:
        require_lava()
    else:
        with pytest.raises(LavaUnavailableError, match=r"`make venv`"):
            require_lava()


def test_noop_before_python_311(clean_meta_path, monkeypatch, caplog):
    monkeypatch.setattr(sys, "version_info", (3, 10, 13, "final", 0))
    with caplog.at_level(logging.DEBUG, logger=compat.__name__):
        assert compat.install() is False
    assert _finders() == 0
    assert "Python < 3.11" in caplog.text


def test_install_is_idempotent(clean_meta_path, monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 11, 7, "final", 0))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: object())
    compat.pytest_configure(None)
    assert _finders() == 1
    assert compat.install() is True
    assert _finders() == 1


@pytest.mark.parametrize("reason", ["already imported", "lava is not installed"])
def test_noop_when_target_imported_or_lava_absent(reason, clean_meta_path, monkeypatch, caplog):
    monkeypatch.setattr(sys, "version_info", (3, 11, 7, "final", 0))
    if reason == "already imported":
        monkeypatch.setitem(sys.modules, compat.TARGET, types.ModuleType(compat.TARGET))
    else:
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with caplog.at_level(logging.DEBUG, logger=compat.__name__):
        assert compat.install() is False
    assert _finders() == 0
    assert reason in caplog.text


def test_loader_swaps_decorator_and_restores_it_on_error():
    original = dataclasses.dataclass

    class Item:  # unhashable, like lava's ByteEncoder
        __hash__ = None

    class FailingLoader(importlib.abc.Loader):
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            @dataclasses.dataclass(eq=False)
            class Holder:
                item: Item = Item()

            module.Holder = Holder
            raise RuntimeError("module body failed")

    module = types.ModuleType("fake")
    with pytest.raises(RuntimeError, match="module body failed"):
        compat._PatchingLoader(FailingLoader()).exec_module(module)
    assert dataclasses.dataclass is original
    first, second = module.Holder(), module.Holder()
    assert isinstance(first.item, Item) and first.item is not second.item


@pytest.mark.lava
@below_312
def test_exactly_eight_fields_get_factories():
    from lava.magma.compiler import var_model

    factories = {
        f"{cls.__name__}.{field.name}"
        for cls in vars(var_model).values()
        if dataclasses.is_dataclass(cls) and cls.__module__ == var_model.__name__
        for field in dataclasses.fields(cls)
        if field.default_factory is not dataclasses.MISSING
    }
    if sys.version_info < (3, 11):  # no shim: upstream's shared default instances
        assert factories == set()
        return
    assert factories == {
        "CoreEncoder.x", "CoreEncoder.y", "CoreEncoder.p",
        "ChipEncoder.x", "ChipEncoder.y", "ChipEncoder.z",
        "AxonEncoder.hi", "AxonEncoder.lo",
    }
    first, second = var_model.CoreEncoder(), var_model.CoreEncoder()
    assert first.x == var_model.ByteEncoder() and first.x is not second.x


@pytest.mark.lava
@below_312
def test_installed_files_untouched_and_decorator_restored(tmp_path):
    out = _run(
        """
        import base64, dataclasses, hashlib, importlib.metadata, json
        original = dataclasses.dataclass
        path = next(p for p in importlib.metadata.files("lava-nc")
                    if str(p).endswith("lava/magma/compiler/var_model.py"))

        def digest():
            raw = hashlib.sha256(path.locate().read_bytes()).digest()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        before = digest()
        import lava_diffmod
        from lava.proc.lif.process import LIF
        print(json.dumps([path.hash.value, before, digest(), dataclasses.dataclass is original]))
        """,
        tmp_path,
    )
    recorded, before, after, restored = json.loads(out)
    assert recorded == before == after  # the wheel's RECORD hash: never patched on disk
    assert restored


@pytest.mark.lava
@below_312
def test_usable_as_pytest_plugin(tmp_path):
    (tmp_path / "test_uses_lava.py").write_text(
        "def test_lif_imports():\n    from lava.proc.lif.process import LIF\n"
    )
    plugin = ["-p", "lava_diffmod.lava.compat", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *plugin],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
