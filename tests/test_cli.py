"""The command line's own parsing: what a user types, wherever they type it."""

from __future__ import annotations

import pytest

from kubegrid import cli


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["run", "f.yaml"], 0),
        (["-v", "run", "f.yaml"], 1),
        (["run", "-v", "f.yaml"], 1),
        (["run", "f.yaml", "-vv"], 2),
        (["status", "-v", "gs"], 1),
    ],
)
def test_verbose_may_come_before_or_after_the_command(
    argv: list[str], verbose: int
) -> None:
    assert cli._parser().parse_args(argv).verbose == verbose
