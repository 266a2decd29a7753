"""The public surface of ``data``: every exported name resolves, nothing else leaks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

import data.frame

# Under pytest the ``tests/data`` folder can shadow the top-level ``data`` package
# object (its submodules still resolve), so the package's ``__init__`` is loaded from
# its own file here.
_INIT = Path(data.frame.__file__).with_name("__init__.py")


@pytest.fixture(scope="module")
def package() -> ModuleType:
    spec = importlib.util.spec_from_file_location("data_public_surface", _INIT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_exported_name_resolves(package: ModuleType) -> None:
    assert len(package.__all__) == len(set(package.__all__))
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    assert package.generate_fleet.__module__ == "data.synthetic"


def test_unknown_names_raise_attribute_error(package: ModuleType) -> None:
    with pytest.raises(AttributeError, match="no attribute 'frame_helpers'"):
        _ = package.frame_helpers
