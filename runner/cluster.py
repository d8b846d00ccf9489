"""``kubegrid submit``, ``status`` and ``results``: a GridSearch on a cluster.

Called by :mod:`kubegrid.cli`, which adds these subcommands through
:func:`add_commands`. They talk to the cluster of the current kube context
(``--context`` and ``-n/--namespace`` override it) with the user's own
credentials; ``results`` then reads the artifacts from object storage with
the user's own storage credentials, as ``kubegrid run`` does. The operator
is never involved beyond what it wrote into the status.

Exit codes follow :mod:`kubegrid.errors`: 2 for a bad manifest or a missing
search, 75 when the cluster cannot be reached; ``status --wait`` returns 1
when the search ends Failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml

from kubegrid import errors, storage
from kubegrid import spec as specs

logger = logging.getLogger(__name__)

GROUP, VERSION = specs.API_VERSION.split("/")
PLURAL = "gridsearches"
TERMINAL = ("Succeeded", "Failed")


def add_commands(commands: Any) -> None:
    """Add submit, status and results to the CLI's subparsers."""
    submit = commands.add_parser("submit", help="create a GridSearch on the cluster")
    submit.add_argument("file", help="GridSearch manifest (YAML)")
    _add_cluster_options(submit)
    submit.set_defaults(handler=cmd_submit)

    status = commands.add_parser("status", help="phase, progress and best so far")
    status.add_argument("name")
    status.add_argument(
        "--wait", action="store_true", help="poll until it Succeeds or Fails"
    )
    status.add_argument("--timeout", type=float, default=None, help="seconds to wait")
    status.add_argument("--json", action="store_true", help="print the raw status")
    _add_cluster_options(status)
    status.set_defaults(handler=cmd_status)

    found = commands.add_parser("results", help="summary and top candidates")
    found.add_argument("name")
    found.add_argument("--top", type=int, default=5, help="candidates to list")
    found.add_argument("--json", action="store_true", help="print summary.json")
    _add_cluster_options(found)
    found.set_defaults(handler=cmd_results)


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", default=None)
    parser.add_argument("--context", default=None, help="kubeconfig context")
    parser.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)"
    )


def cmd_submit(args: argparse.Namespace) -> int:
    # Validate locally first: a typo is reported before anything is sent.
    manifest = specs.load(args.file)
    document = _document(args.file)
    api, namespace = _connect(args, manifest.metadata.namespace)
    document.setdefault("metadata", {})["namespace"] = namespace
    name = manifest.metadata.name

    # Created, or, if the name exists, only suspend may change (the CRD's rule).
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, document)
        print(f"gridsearch.kubegrid.io/{name} created in {namespace}")
        return errors.EXIT_OK
    except _api_exception() as exc:
        if getattr(exc, "status", None) != 409:
            raise _translate(exc, name) from None
    try:
        api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"spec": document["spec"]},
            _content_type="application/merge-patch+json",
        )
    except _api_exception() as exc:
        raise _translate(exc, name) from None
    print(f"gridsearch.kubegrid.io/{name} configured in {namespace}")
    return errors.EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    api, namespace = _connect(args, None)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    while True:
        search = _get(api, namespace, args.name)
        status = search.get("status") or {}
        phase = status.get("phase")
        if not args.wait or phase in TERMINAL:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise errors.InfraError(
                f"{args.name} is still {phase} after {args.timeout}s"
            )
        time.sleep(2)
    print(json.dumps(status, indent=2) if args.json else describe(args.name, status))
    return 1 if args.wait and phase == "Failed" else errors.EXIT_OK


def describe(name: str, status: dict[str, Any]) -> str:
    """The status as a few human lines."""
    lines = [f"{name}: {status.get('phase') or 'Unknown'}"]
    if status.get("progress"):
        shards = status.get("shards") or {}
        eta = f", about {status['eta']} left" if status.get("eta") else ""
        lines.append(
            f"  progress: {status['progress']} fits "
            f"({shards.get('succeeded', 0)}/{shards.get('total', '?')} shards){eta}"
        )
    if status.get("bestScore") is not None:
        metric = status.get("refitMetric") or "score"
        lines.append(f"  best {metric}: {status['bestScore']}")
        lines.append(f"  best params: {json.dumps(status.get('bestParams'))}")
    if status.get("resultsUri"):
        lines.append(f"  results: {status['resultsUri']}")
    if status.get("message"):
        lines.append(f"  message: {status['message']}")
    return "\n".join(lines)


def cmd_results(args: argparse.Namespace) -> int:
    api, namespace = _connect(args, None)
    search = _get(api, namespace, args.name)
    manifest = specs.parse(
        {
            "apiVersion": specs.API_VERSION,
            "kind": specs.KIND,
            "metadata": {"name": args.name},
            "spec": search.get("spec") or {},
        }
    )
    phase = (search.get("status") or {}).get("phase")
    if phase != "Succeeded":
        raise errors.UserError(
            f"{args.name} is {phase or 'not started'}; no results yet"
        )

    # The artifacts live under the output URI; read them as the user.
    location = storage.Location(
        manifest.spec.storage.endpoint_url, manifest.spec.storage.region
    )
    store = storage.open_store(manifest.spec.output.uri, location)
    # pandas and pyarrow load only for this command, not for every CLI start.
    from kubegrid import results

    summary = results.read_summary(store)
    if args.json:
        print(json.dumps(summary, indent=2))
        return errors.EXIT_OK
    print(_top_candidates(store, summary, args.top))
    return errors.EXIT_OK


def _top_candidates(store: storage.Store, summary: dict[str, Any], top: int) -> str:
    from kubegrid import results

    table = results.read_cv_results(store)
    metric = summary.get("refitMetric") or summary["metrics"][0]
    ranks = table[f"rank_test_{metric}"]
    order = sorted(range(len(table["params"])), key=lambda i: int(ranks[i]))
    lines = [f"top {min(top, len(order))} of {len(order)} candidates by {metric}:"]
    for i in order[:top]:
        mean, std = table[f"mean_test_{metric}"][i], table[f"std_test_{metric}"][i]
        params = json.dumps(table["params"][i])
        lines.append(f"  {int(ranks[i]):>4}  {mean:.6f} ± {std:.6f}  {params}")
    if summary.get("nFailedFits"):
        lines.append(f"{summary['nFailedFits']} fits failed: see summary.json")
    for label, uri in summary.get("artifacts", {}).items():
        lines.append(f"{label}: {uri}")
    return "\n".join(lines)


def _document(path: str) -> dict[str, Any]:
    """The GridSearch document of a file, as a plain dict to send."""
    for document in yaml.load_all(Path(path).read_text(), Loader=specs.Loader):
        if isinstance(document, dict) and document.get("kind") == specs.KIND:
            return document
    raise errors.SpecError("(manifest)", f"{path} holds no GridSearch document")


def _connect(args: argparse.Namespace, namespace: str | None) -> tuple[Any, str]:
    """A CustomObjectsApi for the chosen context, and the namespace to use."""
    import kubernetes

    # Read the file now, not at import: $KUBECONFIG may change in between.
    path = args.kubeconfig or os.environ.get("KUBECONFIG", "~/.kube/config")
    path = os.path.expanduser(path.split(os.pathsep)[0])
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(path)
        client = kubernetes.config.new_client_from_config(path, context=args.context)
    except (kubernetes.config.ConfigException, OSError) as exc:
        # A missing or broken kubeconfig is a set-up mistake, not a blip.
        raise errors.SpecError(
            "--kubeconfig",
            f"no usable kubeconfig at {path}: {exc}; point --kubeconfig or "
            "KUBECONFIG at one, or pick a --context",
        ) from None
    chosen = next((c for c in contexts if c["name"] == args.context), active)
    default = (chosen or {}).get("context", {}).get("namespace") or "default"
    return kubernetes.client.CustomObjectsApi(client), (
        args.namespace or namespace or default
    )


def _get(api: Any, namespace: str, name: str) -> dict[str, Any]:
    try:
        search: dict[str, Any] = api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except _api_exception() as exc:
        raise _translate(exc, name) from None
    return search


def _api_exception() -> Any:
    """The errors a call may raise: the API's answers and unreachable servers.

    Imported late: every kubegrid command, pods included, loads this module.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    return (ApiException, HTTPError)


def _translate(exc: Any, name: str) -> errors.KubegridError:
    """An API error as a kubegrid error: the server's own reason, unwrapped."""
    if not hasattr(exc, "status"):
        return errors.InfraError(f"cannot reach the cluster for {name!r}: {exc}")
    reason = exc.reason
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        reason = json.loads(exc.body).get("message") or reason
    if exc.status == 404:
        return errors.UserError(
            f"gridsearch {name!r} not found (is the CRD installed, the namespace "
            f"right?): {reason}"
        )
    if exc.status in (400, 403, 409, 422):
        return errors.UserError(f"the cluster refused {name!r}: {reason}")
    return errors.InfraError(f"the cluster did not answer for {name!r}: {reason}")
