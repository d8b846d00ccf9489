"""Shared inputs of the operator tests: manifests as the API server stores them."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def digits_spec() -> dict[str, Any]:
    """The spec of examples/digits-svc.yaml, as a fresh dict."""
    document = yaml.safe_load((EXAMPLES / "digits-svc.yaml").read_text())
    return copy.deepcopy(document["spec"])


@pytest.fixture
def spec() -> dict[str, Any]:
    return digits_spec()
