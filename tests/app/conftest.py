"""Fixtures of the explorer's tests: a technique registered only for one test, so that the generic
technique picker is exercised whatever the registry holds."""

from typing import ClassVar, Literal

import pytest
from pydantic import Field

from apphelpers import TEST_TECHNIQUE


@pytest.fixture
def test_technique():
    """A do-nothing technique with one parameter of each widget type, registered for one test.
    (Annotations are evaluated here, not postponed: several test directories hold a ``conftest``
    module, so pydantic could not look names up by module later.)"""
    from simulator.techniques import REGISTRY, Technique

    class ExplorerTestNoop(Technique):
        name: ClassVar[str] = TEST_TECHNIQUE
        family: ClassVar[str] = "test"
        citation: ClassVar[str] = "none (test fixture)"
        summary: ClassVar[str] = "changes nothing"
        ratio: float = Field(0.5, ge=0.0, le=1.0, description="a float")
        steps: int = Field(4, ge=1, description="an int")
        enabled: bool = Field(True, description="a bool")
        mode: Literal["a", "b"] = Field("a", description="a choice")

    REGISTRY[TEST_TECHNIQUE] = ExplorerTestNoop
    yield TEST_TECHNIQUE
    REGISTRY.pop(TEST_TECHNIQUE, None)
