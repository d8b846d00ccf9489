"""Static checks of the Dockerfile: no Docker engine runs on these machines.

The image is built in CI elsewhere; here we parse the Dockerfile and check the
properties it promises (slim base, non-root, pinned stack, no build tools in
the final layer), and that every command the chart and the
operator run in the image exists in the installed project.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import re
import shlex
import tomllib

import pytest
from kopf import cli as kopf_cli

from kubegrid import cli

from .helpers import ROOT, render

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(i.split(None, 1)[0].upper(), i.split(None, 1)[1]) for i in joined]


def _stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage; global ARGs come first as stage 0."""
    stages: list[list[tuple[str, str]]] = [[]]
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _base_images() -> list[str]:
    defaults = {}
    for name, argument in _stages()[0]:
        if name == "ARG" and "=" in argument:
            key, value = argument.split("=", 1)
            defaults[key] = value
    images = []
    for stage in _stages()[1:]:
        image = stage[0][1].split()[0]
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image))
    return images


def test_build_is_multi_stage_and_the_final_stage_copies_the_venv():
    stages = _stages()[1:]
    assert len(stages) >= 2
    assert stages[0][0][1].split()[-2:] == ["AS", "build"]
    final = stages[-1]
    assert any(
        name == "COPY" and args.startswith("--from=build") for name, args in final
    )


def test_final_stage_has_no_build_steps_or_tools():
    """Nothing is compiled or installed in the layer that ships."""
    final = _stages()[-1]
    assert not [args for name, args in final if name == "RUN"]
    text = " ".join(args for _, args in final)
    for tool in ("gcc", "g++", "build-essential", "make ", "apt-get"):
        assert tool not in text


def test_base_images_are_pinned_slim_python():
    for image in _base_images():
        repository, _, tag = image.partition(":")
        assert repository == "python"
        assert tag and tag != "latest" and "slim" in tag
        assert re.match(r"3\.\d+\.\d+-", tag), f"{image}: pin the patch release"
    assert ":latest" not in DOCKERFILE.read_text()


def test_runs_as_the_non_root_user_the_chart_expects():
    """USER 65532 in the final stage, the uid of both chart securityContexts."""
    users = [args for name, args in _stages()[-1] if name == "USER"]
    assert users == ["65532:65532"]
    uid = int(users[0].split(":")[0])
    assert uid != 0
    deployment = next(d for d in render() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid


# What computes, stores or draws a result: each must be the version tested.
DATA_STACK = (
    "scikit-learn",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "joblib",
    "threadpoolctl",
    "matplotlib",
    "boto3",
)


def test_installs_the_project_with_its_pins():
    """`pip install .` from pyproject.toml, whose pins match the tests' stack."""
    build = _stages()[1]
    runs = [args for name, args in build if name == "RUN"]
    assert any(re.search(r"\bpip install \.(\s|$)", run) for run in runs)
    copied = " ".join(args for name, args in build if name == "COPY")
    for source in ("pyproject.toml", "README.md", "runner/", "operator/"):
        assert source in copied
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for package in DATA_STACK:
        (pin,) = [d for d in pins["dependencies"] if d.startswith(package + "==")]
        assert importlib.metadata.version(package) == pin.split("==")[1]


def test_no_entrypoint_so_the_pod_command_is_the_whole_argv():
    assert not [1 for name, _ in _instructions() if name == "ENTRYPOINT"]


def test_dockerignore_keeps_what_the_build_copies():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "README.md", "runner", "operator"):
        assert not any(fnmatch.fnmatch(needed, p) for p in patterns), needed
    for heavy in (".venv", ".git", "data", "results", "tests"):
        assert heavy in patterns


def _documented_commands() -> list[list[str]]:
    """The commands listed in the Dockerfile's header comment."""
    commands = []
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"#\s+(?:operator|shard|reducer)\s+(.+)$", line)
        if match:
            commands.append(shlex.split(match.group(1)))
    return commands


def test_documented_commands_exist_in_the_image():
    """kubegrid run-shard / reduce parse; kopf run accepts the operator's argv."""
    commands = _documented_commands()
    assert {c[0] for c in commands} == {"kopf", "kubegrid"}
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubegrid"] == "kubegrid.cli:entry"
    assert importlib.metadata.entry_points(group="console_scripts", name="kopf")
    for command in commands:
        if command[0] == "kubegrid":
            with pytest.raises(SystemExit) as exit_:
                cli.main([command[1], "--help"])
            assert exit_.value.code == 0
        else:
            kopf_cli.run.make_context("run", command[2:])


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "watchNamespaces": ["a"],
            "operator": {"replicas": 2, "peering": {"enabled": True}},
        },
    ],
    ids=["standalone", "peering"],
)
def test_chart_command_is_a_valid_kopf_run(values):
    """The Deployment's argv parses as `kopf run` options, module included."""
    deployment = next(d for d in render(values) if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    argv = container["command"] + container.get("args", [])
    if argv[0] == "/bin/sh":
        argv = ["kopf", "run", *argv[4:]]
    assert argv[:2] == ["kopf", "run"]
    context = kopf_cli.run.make_context("run", argv[2:])
    assert context.params["modules"] == ("kubegrid.operator.handlers",)
    assert context.params["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"


def test_operator_module_the_chart_names_exists():
    """kubegrid.operator.handlers is importable as the chart's `-m` names it."""
    assert importlib.util.find_spec("kubegrid.operator.handlers") is not None
