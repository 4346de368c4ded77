"""The build entry points: Makefile targets and the Windows CI workflow point at real scripts."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.packaging.conftest import ROOT, run

WORKFLOW = ROOT / ".github" / "workflows" / "windows.yml"


def _recipe(target: str) -> tuple[list[str], list[str]]:
    """(prerequisites, recipe lines) of a Makefile target."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(rf"^{re.escape(target)}:(.*)$", line)
        if m:
            body = []
            for next_line in lines[i + 1 :]:
                if not next_line.startswith("\t"):
                    break
                body.append(next_line.strip())
            return m.group(1).split(), body
    raise AssertionError(f"no Makefile target {target}")


@pytest.mark.parametrize(
    ("target", "script"),
    [
        ("build", "build/build.sh"),
        ("deb", "packaging/deb/build-deb.sh"),
        ("msi", "packaging/windows/build-msi.sh"),
        ("offline-bundle", "packaging/offline/make-bundle.sh"),
    ],
)
def test_make_targets_run_the_packaging_scripts(target: str, script: str) -> None:
    prereq, body = _recipe(target)
    # build/deb/offline-bundle name stamp files whose recipes run the scripts (issue 15)
    for stamp in (p for p in prereq if p.startswith("$(DIST)/.stamp-")):
        body = body + [line.removeprefix("$(BUILD_ENV) ") for line in _recipe(stamp)[1]]
    assert any(line.startswith(f"bash {script}") for line in body)
    assert (ROOT / script).is_file()
    run(["bash", "-n", str(ROOT / script)])


def test_make_target_order() -> None:
    # file targets with their inputs: each artifact built once, rebuilt only when inputs change
    assert _recipe("deb")[0] == ["$(DIST)/.stamp-deb"]
    assert _recipe("offline-bundle")[0] == ["$(DIST)/.stamp-offline-bundle"]
    assert _recipe("build")[0] == ["$(DIST)/.stamp-heron-manager", "$(DIST)/.stamp-heron-agent"]
    deb = _recipe("$(DIST)/.stamp-deb")[0]
    assert {"$(DIST)/.stamp-heron-manager", "$(DIST)/.stamp-heron-agent", "$(DEB_INPUTS)"} <= set(
        deb
    )
    bundle = set(_recipe("$(DIST)/.stamp-offline-bundle")[0])
    assert {"$(DIST)/.stamp-deb", "$(BUNDLE_INPUTS)"} <= bundle
    assert "$(PROGRAM_INPUTS)" in _recipe("$(DIST)/.stamp-heron-agent")[0]
    # the programs are frozen from the build venv (runtime deps + PyInstaller), not the dev venv
    prereq, body = _recipe("$(DIST)/.stamp-heron-manager")
    assert prereq[-2:] == ["|", "$(BUILD_VENV)/.installed"]
    assert body[0].startswith("$(BUILD_ENV) bash build/build.sh")
    prereq, body = _recipe("$(BUILD_VENV)/.installed")
    assert "build/requirements.py" in prereq
    assert any("--no-index --find-links" in line for line in body)
    prereq, body = _recipe("test-frozen")
    assert "setup" in prereq
    assert any("-m slow tests/packaging" in line for line in body)


def test_build_requirements_are_runtime_deps_and_pyinstaller_only() -> None:
    spec = importlib.util.spec_from_file_location("requirements", ROOT / "build/requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reqs = module.requirements()
    with open(ROOT / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    assert reqs == project["dependencies"] + project["optional-dependencies"]["build"]
    names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in reqs}
    assert "pyinstaller" in names
    assert not names & {"pytest", "ruff", "mypy", "chdb", "hypothesis", "selenium"}


def test_windows_workflow_builds_installs_and_uploads() -> None:
    yaml = pytest.importorskip("yaml")
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    job = doc["jobs"]["msi"]
    assert str(job["runs-on"]).startswith("windows")
    scripts = "\n".join(str(step.get("run", "")) for step in job["steps"])
    assert "bash build/build.sh" in scripts
    assert "TOOLCHAIN=wix3" in scripts and "packaging/windows/build-msi.sh" in scripts
    assert "heron-manager.exe --version" in scripts and "heron-agent.exe --version" in scripts
    assert scripts.count("msiexec.exe") >= 4  # install + uninstall of both MSIs
    uses = [str(step.get("uses", "")) for step in job["steps"]]
    assert any(u.startswith("actions/upload-artifact") for u in uses)
    assert any(u.startswith("actions/setup-python") for u in uses)


def _steps(job: dict[str, Any]) -> list[str]:
    return [f"{step.get('name', '')}\n{step.get('run', '')}" for step in job["steps"]]


def test_windows_live_smoke_covers_the_whole_life_cycle() -> None:
    """Issue 26: install both, enroll on the same host, ETW, a searchable process event, clean
    stop, upgrade to rebuilt MSIs, uninstall, reinstall over the kept data: in this order."""
    yaml = pytest.importorskip("yaml")
    steps = _steps(yaml.safe_load(WORKFLOW.read_text())["jobs"]["msi"])

    def at(*needles: str) -> int:
        hits = [i for i, s in enumerate(steps) if all(n in s for n in needles)]
        assert hits, needles
        return hits[0]

    order = [
        at("Sysmon64.exe -accepteula -i"),
        at("heron-manager-*-x64.msi", "first-admin-key.json", "Get-NetFirewallRule"),
        at("smoke.py token"),
        at("heron-agent-*-x64.msi", "MANAGER=", "ENROLL_TOKEN=", "link\\identity\\cert.pem"),
        at('logman query "Heron-EDR" -ets', "smoke.py event"),
        at("Stop-Service heron-agent", "agent stopped", "Stop-Service heron-manager"),
        at("build-msi.sh --version"),
        at("HERON_NEXT", "ENROLL_TOKEN=", "--expect 1", "smoke.py event"),
        at("/x ", "Get-NetFirewallRule", "manager-reinstall.log"),
    ]
    assert order == sorted(order)
    smoke = (ROOT / "packaging" / "windows" / "smoke.py").read_text()
    assert "/enroll/tokens" in smoke and "/search?" in smoke and "/endpoints" in smoke


def test_windows_unit_job_runs_the_windows_tests() -> None:
    yaml = pytest.importorskip("yaml")
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["unit"]
    assert str(job["runs-on"]).startswith("windows")
    run_line = "\n".join(_steps(job))
    for path in (
        "tests/windows",
        "tests/agent/test_etw.py",
        "tests/appliance/test_sockets.py",
        "tests/appliance/test_server_select.py",
        "tests/agent/test_actions_windows.py",
    ):
        assert path in run_line
        assert (ROOT / path.split("::")[0]).exists()
    for node in (line.strip() for line in run_line.split() if "::" in line):
        file, name = node.split("::")
        assert f"def {name}(" in (ROOT / file).read_text(), node


def test_docs_cover_every_packaging_script() -> None:
    docs = (ROOT / "docs" / "packaging.md").read_text()
    for script in sorted(Path(ROOT / "packaging").rglob("*.sh")) + [ROOT / "build/build.sh"]:
        assert script.name in docs, script
    for target in ("make build", "make deb", "make offline-bundle", "make msi", "make test-frozen"):
        assert target in docs
    for prop in ("ENROLL_TOKEN", "ENROLL_BUNDLE", "MANAGER", "HERON_ENROLL_TOKEN"):
        assert prop in docs


def test_linux_workflow_builds_tests_and_uploads() -> None:
    yaml = pytest.importorskip("yaml")
    doc: dict[str, Any] = yaml.safe_load((WORKFLOW.parent / "packaging.yml").read_text())
    [job] = doc["jobs"].values()
    steps = [str(step.get("run", "")) for step in job["steps"]]
    joined = "\n".join(steps)
    for script in (
        "build/build.sh",
        "packaging/deb/build-deb.sh",
        "packaging/offline/make-bundle.sh",
        ".ci/sysdeps.sh",
    ):
        assert f"bash {script}" in joined
    # The tests run after the build, on it, as root (dpkg roots and network namespaces).
    build = next(i for i, s in enumerate(steps) if "build/build.sh" in s)
    tests = next(i for i, s in enumerate(steps) if "pytest" in s)
    assert build < tests
    assert "sudo" in steps[tests] and "HERON_FROZEN_DIST=dist" in steps[tests]
    assert "tests/packaging" in steps[tests]
