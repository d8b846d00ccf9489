"""Turn a Pod spec into a local process launch: the kubelet's share of the harness.

Role: `jobcontroller.JobController` calls `materialise()` for every attempt it
starts. The image is ignored; the container's `command` + `args` run on this
machine with the container's environment and volumes recreated locally:

* `env` with `value`, `valueFrom.secretKeyRef`, `valueFrom.configMapKeyRef`
  and `valueFrom.fieldRef`; `envFrom` with `configMapRef` / `secretRef`;
  `$(VAR)` references expanded as the kubelet does;
* ConfigMap and Secret volumes become directories holding their keys as
  files; emptyDir (and any other volume type) becomes an empty directory;
* every mount path found in argv, env values or `workingDir` is rewritten to
  its local directory, so `kubegrid run-shard /etc/kubegrid/spec.yaml` works.

A missing ConfigMap or Secret raises `PodStartError`; the controller retries
later, as a kubelet keeps such a pod in ContainerCreating.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from tests.support.apiclient import ApiClient, NotFound

# argv -> argv; e.g. maps "kubegrid" to the venv's console script.
CommandRewriter = Callable[[list[str]], list[str]]

# Host variables that must not leak into a "pod": they would point the code
# under test at the developer's cluster or cloud account instead of the fakes.
_LEAKY_PREFIXES = ("KUBECONFIG", "KUBERNETES_", "AWS_", "JOB_COMPLETION_INDEX")

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELD_INDEXED = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


class PodStartError(Exception):
    """The pod cannot start yet, e.g. a referenced ConfigMap does not exist."""


@dataclasses.dataclass
class Launch:
    """Everything `subprocess.Popen` needs to run one container locally."""

    argv: list[str]
    env: dict[str, str]
    cwd: pathlib.Path


def host_env() -> dict[str, str]:
    """This process's environment minus variables that would leak into pods."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}


def rewrite_first(mapping: Mapping[str, str]) -> CommandRewriter:
    """A `CommandRewriter` that replaces argv[0] when it is a key of `mapping`."""

    def rewrite(argv: list[str]) -> list[str]:
        if argv and argv[0] in mapping:
            return [mapping[argv[0]], *argv[1:]]
        return argv

    return rewrite


def materialise(
    pod: dict[str, Any],
    api: ApiClient,
    scratch: pathlib.Path,
    *,
    base_env: Mapping[str, str],
    injected_env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    command_rewriter: CommandRewriter | None = None,
) -> Launch:
    """Prepare the first container of `pod` to run as a local process.

    `scratch` is a fresh directory owned by this attempt. Precedence of
    variables, lowest first: `base_env` (the host's), `injected_env` (what the
    Job controller adds to the template, e.g. JOB_COMPLETION_INDEX), the
    container's `envFrom` and `env`, then `extra_env` (the test's overrides).
    """
    namespace = pod["metadata"]["namespace"]
    container = pod["spec"]["containers"][0]
    mounts = _mount_volumes(pod["spec"], container, api, namespace, scratch)

    # The container's own variables, resolved and expanded in declaration order.
    declared = _resolve_env(container, pod, api, dict(injected_env or {}))
    declared = {k: _rewrite_paths(v, mounts) for k, v in declared.items()}
    env = {**base_env, **declared, **(extra_env or {})}

    # The kubelet expands $(VAR) in command and args from the container env.
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    argv = [_rewrite_paths(_expand(arg, env), mounts) for arg in argv]
    if command_rewriter is not None:
        argv = command_rewriter(argv)
    if not argv:
        raise PodStartError("the container has no command or args (images are ignored)")
    return Launch(argv=argv, env=env, cwd=_working_dir(container, mounts, scratch))


def _working_dir(
    container: dict[str, Any], mounts: dict[str, pathlib.Path], scratch: pathlib.Path
) -> pathlib.Path:
    # An unmounted workingDir would be inside the image; use a private dir so
    # relative writes never land in the repository.
    working = container.get("workingDir")
    if working:
        local = pathlib.Path(_rewrite_paths(working, mounts))
        if local.is_dir():
            return local
    cwd = scratch / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    return cwd


# -- volumes -----------------------------------------------------------------


def _mount_volumes(
    spec: dict[str, Any],
    container: dict[str, Any],
    api: ApiClient,
    namespace: str,
    scratch: pathlib.Path,
) -> dict[str, pathlib.Path]:
    """Create each volume as a directory; map every mountPath to its directory."""
    volumes: dict[str, pathlib.Path] = {}
    for volume in spec.get("volumes") or []:
        target = scratch / "volumes" / volume["name"]
        target.mkdir(parents=True, exist_ok=True)
        for key, content in _volume_files(volume, api, namespace).items():
            (target / key).parent.mkdir(parents=True, exist_ok=True)
            (target / key).write_bytes(content)
        volumes[volume["name"]] = target

    mounts: dict[str, pathlib.Path] = {}
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise PodStartError(
                f"volumeMount of an undeclared volume {mount['name']!r}"
            )
        local = volumes[mount["name"]] / mount.get("subPath", "")
        mounts[mount["mountPath"].rstrip("/") or "/"] = local
    return mounts


def _volume_files(
    volume: dict[str, Any], api: ApiClient, namespace: str
) -> dict[str, bytes]:
    """The files a volume starts with; emptyDir and unknown kinds start empty."""
    if "configMap" in volume:
        source = volume["configMap"]
        obj = _fetch(api, "v1/configmaps", namespace, source)
        files = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        files |= {
            k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()
        }
    elif "secret" in volume:
        source = volume["secret"]
        obj = _fetch(
            api, "v1/secrets", namespace, {**source, "name": source["secretName"]}
        )
        files = _secret_data(obj)
    else:
        return {}

    # `items` selects keys and renames them, as the kubelet does.
    if source.get("items"):
        return {
            item["path"]: files[item["key"]]
            for item in source["items"]
            if item["key"] in files
        }
    return files


def _fetch(api: ApiClient, resource: str, namespace: str, ref: dict[str, Any]) -> dict:
    try:
        return api.get(resource, namespace, ref["name"])
    except NotFound:
        if ref.get("optional"):
            return {}
        raise PodStartError(f"{resource} {namespace}/{ref['name']} not found") from None


def _secret_data(secret: dict[str, Any]) -> dict[str, bytes]:
    # kmock does not fold stringData into data as the API server would.
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data |= {k: v.encode() for k, v in (secret.get("stringData") or {}).items()}
    return data


def _rewrite_paths(value: str, mounts: Mapping[str, pathlib.Path]) -> str:
    """Replace mount paths in `value` with local directories, longest first.

    One pass over `value`: a local directory already written in is never
    rewritten again (with an emptyDir at /tmp, the local path of another
    volume under /tmp/pytest-... would otherwise be rewritten twice).
    """
    if not mounts:
        return value
    # Only whole path components: /etc/kube must not match /etc/kubegrid, and
    # /tmp must not match inside /var/tmp.
    pattern = "|".join(
        r"(?<![\w.-])" + re.escape(mount_path) + r"(?=/|$|[^\w.-])"
        for mount_path in sorted(mounts, key=len, reverse=True)
    )
    return re.sub(pattern, lambda match: str(mounts[match.group(0)]), value)


# -- environment ---------------------------------------------------------------


def _resolve_env(
    container: dict[str, Any], pod: dict[str, Any], api: ApiClient, env: dict[str, str]
) -> dict[str, str]:
    """Add the container's variables to `env` (already holding injected ones)."""
    namespace = pod["metadata"]["namespace"]
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for key, value in _env_from(source, api, namespace).items():
            env[prefix + key] = value
    for var in container.get("env") or []:
        resolved = _env_value(var, pod, api, namespace)
        if resolved is not None:
            env[var["name"]] = _expand(resolved, env)
    return env


def _env_from(source: dict[str, Any], api: ApiClient, namespace: str) -> dict[str, str]:
    if "configMapRef" in source:
        obj = _fetch(api, "v1/configmaps", namespace, source["configMapRef"])
        return dict(obj.get("data") or {})
    if "secretRef" in source:
        obj = _fetch(api, "v1/secrets", namespace, source["secretRef"])
        return {k: v.decode() for k, v in _secret_data(obj).items()}
    return {}


def _env_value(
    var: dict[str, Any], pod: dict[str, Any], api: ApiClient, namespace: str
) -> str | None:
    """One variable's value; None when an optional reference is missing."""
    if "valueFrom" not in var:
        return str(var.get("value", ""))
    source = var["valueFrom"]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        secret = _pick_key(_secret_data(_fetch(api, "v1/secrets", namespace, ref)), ref)
        return None if secret is None else secret.decode()
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        return _pick_key(
            _fetch(api, "v1/configmaps", namespace, ref).get("data") or {}, ref
        )
    if "fieldRef" in source:
        return _field_value(source["fieldRef"]["fieldPath"], pod)
    # resourceFieldRef and the like: no local meaning; leave the variable unset.
    return None


def _pick_key(data: Mapping[str, Any], ref: dict[str, Any]) -> Any:
    """The referenced key's value; None if it is missing but optional."""
    if ref["key"] in data:
        return data[ref["key"]]
    if ref.get("optional"):
        return None
    raise PodStartError(f"{ref['name']!r} has no key {ref['key']!r}")


def _field_value(path: str, pod: dict[str, Any]) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": "kmock-node",
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    match = _FIELD_INDEXED.fullmatch(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise PodStartError(f"fieldRef {path!r} is not supported by the harness")


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Expand $(VAR) from `env`; keep unknown references; $$ escapes a dollar."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, value)
