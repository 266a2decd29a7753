"""Every package's public surface: an ``__all__`` (kept sorted by ruff) whose names resolve."""

import importlib

import pytest

PACKAGES = ("data", "market", "market.ledger", "models", "pipelines", "pipelines.replay")


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_unique_and_resolves(name: str) -> None:
    package = importlib.import_module(name)
    exported = package.__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    for member in exported:
        assert getattr(package, member) is not None, f"{name}.{member}"


@pytest.mark.parametrize("name", PACKAGES)
def test_private_modules_stay_private(name: str) -> None:
    package = importlib.import_module(name)
    assert not [m for m in package.__all__ if m.startswith("_")]


def test_the_packages_are_the_products_not_the_test_folders() -> None:
    for name in ("data", "market", "models", "pipelines", "serving"):
        module = importlib.import_module(name)
        assert module.__file__ is not None
        assert "/tests/" not in module.__file__, module.__file__
