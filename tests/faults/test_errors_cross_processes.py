"""Errors raised in a forked worker reach the parent intact.

``kubegrid run`` and a multi-CPU shard run tasks in forked worker processes;
an error there is pickled back to the parent. An exception that cannot be
unpickled breaks the pool instead of ending the run with its message.
"""

from __future__ import annotations

import multiprocessing
import pickle

import pytest

from kubegrid import errors
from kubegrid.storage import StorageAccessError

RAISED = [
    errors.SpecError("spec.cv", "cannot split the data"),
    errors.DataError("spec.dataset.target", "column 'y' has missing values"),
    errors.FitError("all 6 fits failed"),
    errors.InfraError("s3://bucket/key: InternalError"),
    errors.ResultsError("results are missing for shards 1"),
    StorageAccessError("s3://bucket/key: NoSuchBucket"),
]


@pytest.mark.parametrize("error", RAISED, ids=lambda e: type(e).__name__)
def test_error_survives_pickling(error: errors.KubegridError) -> None:
    """Same class, same message, same field (where it has one)."""
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert getattr(copy, "field", None) == getattr(error, "field", None)
    assert copy.exit_code == error.exit_code


def _raise_spec_error(_: int) -> None:
    raise errors.SpecError("spec.cv", "cannot split the data")


def test_error_raised_in_a_forked_pool_reaches_the_parent() -> None:
    """A SpecError raised in a forked pool worker is re-raised in the parent."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        pending = pool.map_async(_raise_spec_error, [0])
        with pytest.raises(errors.SpecError) as raised:
            pending.get(timeout=60)

    assert raised.value.field == "spec.cv"
    assert str(raised.value) == "spec.cv: cannot split the data"
