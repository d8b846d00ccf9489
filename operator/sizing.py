"""Admission of a GridSearch: validate it and size its plan, importing no user code.

Called by :mod:`kubegrid.operator.handlers` when a GridSearch appears, and by
:mod:`kubegrid.operator.status` to turn completed indexes into task counts.
Validation is the runner's own (:func:`kubegrid.spec.parse` and
:func:`kubegrid.estimators.check_statically`), so the operator and the pods
never disagree on what is valid; whatever needs the data or an import of a
user-named module is left to the pods, which report back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic
from kubernetes.client import V1Affinity, V1Toleration

from kubegrid import estimators, planning
from kubegrid import spec as specs
from kubegrid.errors import SpecError
from kubegrid.operator import jobs

# Kubernetes object names (and the job-name label on pods) stop at 63
# characters; the longest child name adds this suffix to the search's name.
_NAME_LIMIT = 63 - len("-shards")


@dataclass(frozen=True)
class Sizing:
    """The plan's dimensions as far as the spec alone decides them.

    ``n_splits`` and ``n_tasks`` are None when the data decides the split
    count (LeaveOneGroupOut); the shard count is always known.
    """

    n_candidates: int
    n_splits: int | None
    n_shards: int

    @property
    def n_tasks(self) -> int | None:
        return None if self.n_splits is None else self.n_candidates * self.n_splits

    def describe(self) -> str:
        """'20 candidates × 5 splits = 100 fits in 16 shards'."""
        shards = f"in {self.n_shards} shards"
        if self.n_splits is None:
            return f"{self.n_candidates} candidates, splits from the data, {shards}"
        return (
            f"{self.n_candidates} candidates × {self.n_splits} splits = "
            f"{self.n_tasks} fits {shards}"
        )


def admit(
    name: str, namespace: str, raw_spec: Mapping[str, Any]
) -> tuple[specs.GridSearch, Sizing]:
    """Parse and check a stored GridSearch; size its plan.

    Raises SpecError naming the first bad field.
    """
    manifest = specs.parse(
        {
            "apiVersion": specs.API_VERSION,
            "kind": specs.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": dict(raw_spec),
        }
    )
    if len(name) > _NAME_LIMIT:
        raise SpecError(
            "metadata.name",
            f"{name!r} is {len(name)} characters; the Job "
            f"{jobs.shard_job_name(name)!r} must fit in 63, so use at most "
            f"{_NAME_LIMIT}",
        )
    estimators.check_statically(manifest.spec)
    check_pod(manifest.spec.pod)
    return manifest, size(manifest.spec)


def check_pod(pod: specs.Pod) -> None:
    """The PodSpec fields spec.pod passes through, checked by the client's models.

    The manifest model keeps tolerations and affinity open; checked only when
    the Job is created, a typo there would fail every retry of the creation
    and leave the search Pending for good.
    """
    fields: list[tuple[str, type[pydantic.BaseModel], dict[str, Any]]] = [
        (f"spec.pod.tolerations[{i}]", V1Toleration, t)
        for i, t in enumerate(pod.tolerations)
    ]
    if pod.affinity:
        fields.append(("spec.pod.affinity", V1Affinity, pod.affinity))
    for field, model, value in fields:
        try:
            model.model_validate(value)
        except pydantic.ValidationError as exc:
            error = exc.errors()[0]
            if error["type"] == "extra_forbidden":
                error["msg"] = "unknown field"
            where = "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]
            )
            raise SpecError(
                f"{field}{where}",
                f"{error['msg']} (got {error['input']!r}); write it as in a PodSpec",
            ) from None


def size(spec: specs.GridSearchSpec) -> Sizing:
    """Candidates, splits and shards, with the runner's limits enforced."""
    # planning.candidates applies the empty-grid and maxCandidates checks the
    # runner applies; a grid within the limit is cheap to list.
    n_candidates = len(planning.candidates(spec))
    n_splits = planning.n_splits_hint(spec)
    n_tasks = None if n_splits is None else n_candidates * n_splits
    return Sizing(n_candidates, n_splits, planning.shard_count(spec, n_tasks))


def tasks_per_shard(n_tasks: int, n_shards: int) -> list[int]:
    """How many tasks each shard runs, cut exactly as the runner cuts them."""
    bounds = np.linspace(0, n_tasks, n_shards + 1).round().astype(np.int64)
    return [int(n) for n in np.diff(bounds)]
