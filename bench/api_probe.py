"""Kubernetes API requests per search, counted by the test harness.

Run as a child by :mod:`bench.probes` (``python -m bench.api_probe``): it
starts the project's own test harness (the kmock emulator of
``tests/support/kube.py``, its Job controller running each pod as a local
``kubegrid`` process, moto for S3) and the real kopf operator, then runs a few
small digits searches one after another. For each it counts the operator's
requests from creation until the search succeeded (harness traffic excluded,
as ``Kube.count`` does). Varying shards at fixed tasks and tasks at fixed
shards shows whether the count grows with shards (expected) or with tasks
(a bug). Prints one JSON line.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

NS = "default"
# (candidates as C values × gamma values, shards): 20 tasks in 2 and in 10
# shards, and 100 tasks in 2 shards.
CASES = [
    ("t20-s2", [1.0, 10.0], [1e-4, 1e-3], 2),
    ("t20-s10", [1.0, 10.0], [1e-4, 1e-3], 10),
    ("t100-s2", [0.1, 1.0, 10.0, 100.0], [1e-5, 1e-4, 3e-4, 1e-3, 3e-3], 2),
]
TIMEOUT = 300.0


def _spec(
    bucket: str,
    endpoint: str,
    name: str,
    cs: list[float],
    gammas: list[float],
    shards: int,
) -> dict[str, Any]:
    return {
        "dataset": {"uri": f"s3://{bucket}/digits.csv", "target": "target"},
        "estimator": {"class": "sklearn.svm.SVC", "params": {"kernel": "rbf"}},
        "paramGrid": {"C": cs, "gamma": gammas},
        "cv": 5,
        "scoring": "accuracy",
        "output": {"uri": f"s3://{bucket}/results/{name}"},
        "storage": {
            "endpointUrl": endpoint,
            "region": "us-east-1",
            "secretRef": {"name": "s3-creds"},
        },
        "parallelism": 2,
        "sharding": {"shards": shards},
    }


def main() -> dict[str, Any]:
    import sklearn.datasets

    from tests.support import manifests
    from tests.support import s3 as s3_support
    from tests.support.fixtures import default_pod_env, default_rewriter
    from tests.support.jobcontroller import JobController
    from tests.support.kube import GRIDSEARCH, Kube
    from tests.support.operator_proc import OperatorProcess

    frame = sklearn.datasets.load_digits(as_frame=True).frame
    buffer = io.BytesIO()
    frame.to_csv(buffer, index=False)
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-api-") as tmp,
        s3_support.moto_server() as endpoint,
    ):
        work = Path(tmp)
        (work / "kube").mkdir()
        (work / "jobs").mkdir()
        (work / "operator").mkdir()
        s3 = s3_support.client(endpoint)
        bucket = s3_support.fresh_bucket(s3, "bench-api")
        s3.put_object(Bucket=bucket, Key="digits.csv", Body=buffer.getvalue())
        with Kube(work / "kube") as kube:
            client = kube.client()
            client.create(
                "v1/secrets",
                NS,
                manifests.secret(
                    "s3-creds",
                    {
                        "AWS_ACCESS_KEY_ID": s3_support.ACCESS_KEY,
                        "AWS_SECRET_ACCESS_KEY": s3_support.SECRET_KEY,
                    },
                    NS,
                ),
            )
            controller = JobController(
                kube,
                extra_env=default_pod_env(),
                command_rewriter=default_rewriter(),
                workdir=work / "jobs",
            ).start()
            operator = OperatorProcess(kube, work / "operator").start()
            try:
                for name, cs, gammas, shards in CASES:
                    results[name] = _count(
                        kube,
                        client,
                        GRIDSEARCH,
                        name,
                        _spec(bucket, endpoint, name, cs, gammas, shards),
                    )
                    results[name] |= {
                        "tasks": len(cs) * len(gammas) * 5,
                        "shards": shards,
                    }
            finally:
                operator.kill()
                controller.stop()
                client.close()
    return results


def _count(
    kube: Any, client: Any, gridsearch: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    from tests.support import manifests

    since = kube.mark()
    started = time.monotonic()
    client.create(gridsearch, NS, manifests.grid_search(name, spec, NS))
    done = kube.wait_for(
        gridsearch,
        NS,
        name,
        lambda obj: (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"),
        timeout=TIMEOUT,
    )
    # Let the operator's last reactions (events, a final patch) arrive.
    time.sleep(2.0)
    requests = kube.requests(since=since)
    kinds = Counter(
        f"{r.method} {r.plural}{'/' + r.subresource if r.subresource else ''}"
        for r in requests
    )
    return {
        "phase": done["status"]["phase"],
        "seconds": round(time.monotonic() - started, 1),
        "calls": len(requests),
        "by_kind": dict(kinds.most_common()),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.exit(0)
