"""scikit-learn's bundled tables that ``kubegrid sample-data`` writes.

Called by the CLI (the command's choices) and by the data loader, which
suggests the command when a missing local dataset is one of these.
"""

from __future__ import annotations

from pathlib import PurePath

# Name on the command line → the loader in sklearn.datasets.
LOADERS = {
    "digits": "load_digits",
    "iris": "load_iris",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
    "diabetes": "load_diabetes",
}


def command_for(path: str) -> str | None:
    """The sample-data command that writes ``path``, if its name is a sample's."""
    name = PurePath(path).name
    for suffix in (".csv", ".parquet"):
        if name.endswith(suffix) and name[: -len(suffix)] in LOADERS:
            return f"kubegrid sample-data {name[: -len(suffix)]} {path}"
    return None
