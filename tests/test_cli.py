"""The command line's own parsing: what a user types, wherever they type it."""

from __future__ import annotations

import importlib.metadata

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


def test_version_is_the_installed_distributions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``kubegrid --version`` prints the version pip installed, and exits 0."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])

    assert exited.value.code == 0
    version = importlib.metadata.version("kubegrid")
    assert capsys.readouterr().out == f"kubegrid {version}\n"
