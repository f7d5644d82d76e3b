"""The kit's async fixtures and tests, with or without pytest-asyncio installed.

The kit's pytest plugin loads in every pytest run of an environment that has
carebridge installed, including ones without pytest-asyncio: importing it
there must not fail, only its async fixtures cannot run. With pytest-asyncio
(``carebridge[testing]``) they work in its strict mode as in its auto mode.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar, cast

import pytest

F = TypeVar("F", bound=Callable[..., Any])

HAVE_PYTEST_ASYNCIO = importlib.util.find_spec("pytest_asyncio") is not None


def async_fixture(function: F) -> F:
    """Declare an async fixture (``pytest_asyncio.fixture`` when it is installed)."""
    if HAVE_PYTEST_ASYNCIO:
        import pytest_asyncio

        return cast(F, pytest_asyncio.fixture(function))
    return cast(F, pytest.fixture(function))


def async_test(function: F) -> F:
    """Mark an async test for pytest-asyncio (needed in its strict mode, harmless in auto)."""
    if HAVE_PYTEST_ASYNCIO:
        marked: F = pytest.mark.asyncio(function)
        return marked
    return function
