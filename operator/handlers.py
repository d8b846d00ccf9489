"""The kopf handlers of the kubegrid operator: thin doors into :mod:`reconcile`.

Run by kopf (``kopf run -m kubegrid.operator.handlers``; the chart adds
``--liveness=http://0.0.0.0:8080/healthz``). Each handler only unpacks the
event and calls one step of :mod:`kubegrid.operator.reconcile`.

What kopf itself stores stays out of the status: handler progress and the
last handled spec go into ``kubegrid.io/`` annotations, and no handler
returns a value (kopf would write it into the status). There is no finalizer:
the children carry ownerReferences, so deleting a GridSearch never waits for
the operator. Nor is there a timer, which kopf would guard with a finalizer: a
restarted operator catches up through the Job watch, whose first listing
replays every existing Job into ``job_changed``.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from kubegrid import estimators
from kubegrid.operator import jobs, kube, reconcile

logger = logging.getLogger(__name__)

GRIDSEARCHES = (kube.GROUP, kube.VERSION, kube.PLURAL)
OWNED = {jobs.GRIDSEARCH_LABEL: kopf.PRESENT}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="kubegrid.io"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kubegrid.io", key="last-handled-configuration"
    )
    # Only the milestones the steps post explicitly become Events, not logs.
    settings.posting.loggers = False
    kube.configure()

    # scikit-learn's estimator catalogue takes seconds to build; build it now
    # rather than while the first search waits for its Job.
    estimators.sklearn_catalogue()


@kopf.on.create(*GRIDSEARCHES)
def created(body: kopf.Body, **_: Any) -> None:
    with reconcile.serialised(*_key(body)):
        reconcile.admit(dict(body))


@kopf.on.field(*GRIDSEARCHES, field="spec.suspend")
def suspend_changed(body: kopf.Body, old: Any, new: Any, reason: str, **_: Any) -> None:
    # The create handler already built the Jobs with the initial value.
    if reason == kopf.Reason.CREATE or bool(old) == bool(new):
        return
    # A resume may rewrite the status (a queued search), as the Job steps do.
    with reconcile.serialised(*_key(body)):
        reconcile.suspend(dict(body), bool(new))


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
def job_changed(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    if event.get("type") == "DELETED":
        return
    namespace = _key(body)[0]
    name = body.metadata.labels[jobs.GRIDSEARCH_LABEL]
    role = body.metadata.labels.get(jobs.ROLE_LABEL, "shard")
    with reconcile.serialised(namespace, name):
        reconcile.observe(namespace, name, role, dict(body))


def _key(body: kopf.Body) -> tuple[str, str]:
    return str(body.metadata.namespace), str(body.metadata.name)
