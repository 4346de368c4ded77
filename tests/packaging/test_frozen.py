"""Slow tier: build both frozen one-dirs once, then smoke-test them as users run them.

The session fixture builds as an air-gapped build box does: `make wheelhouse` (the only step
with network), then `make build` into a temporary dist directory from that wheelhouse alone, in a
network namespace with no interface up when the test runs as root (pip's own configuration and
local wheel directories are switched off: the wheelhouse must be enough). Set
HERON_FROZEN_DIST=DIR to test an existing build instead (e.g. `make build` output).

The smoke test runs the frozen programs, with no Python on their PATH and from `/`, inside a
private network namespace when the test runs as root (loopback only): manager init + run, agent
enroll + run, events forwarded over mutual TLS, a search that returns them, clean stops. Anything
that tried to download (a DuckDB extension, PyMISP data) would fail there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.packaging.conftest import PACKAGING, ROOT, DpkgRoot, need, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

NETCLIENT = Path(__file__).with_name("netclient.py")
FORBIDDEN_IN_AGENT = ("duckdb", "tantivy", "falcon", "pymisp", "waitress")
STARTUP_LIMIT = 240  # seconds: a condition wait, generous for a busy shared box


@dataclass
class MakeBuild:
    """`make` with the variables that built the session's programs (temporary venv, dist, …)."""

    variables: list[str]
    env: dict[str, str]
    isolated: bool  # run in a network namespace without network
    log: str = ""

    def make(self, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
        cmd = ["make", "--no-print-directory", *self.variables, *args]
        if self.isolated:
            cmd = ["unshare", "--net", "--", *cmd]
        return subprocess.run(
            cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )


@dataclass
class FrozenDist:
    root: Path
    build_seconds: dict[str, float] = field(default_factory=dict)
    build: MakeBuild | None = None  # None for HERON_FROZEN_DIST

    def program(self, role: str) -> Path:
        return self.root / f"heron-{role}" / f"heron-{role}"

    def size_mib(self, role: str) -> float:
        onedir = self.root / f"heron-{role}"
        return sum(p.stat().st_size for p in onedir.rglob("*") if p.is_file()) / 2**20


def offline_make_build(tmp: Path) -> tuple[MakeBuild, Path]:
    """`make wheelhouse` (online), then `make build` from that wheelhouse with no network."""
    common = [
        f"BUILD_VENV={tmp / 'venv'}",
        f"WHEELHOUSE={tmp / 'wheelhouse'}",
        f"DIST={tmp / 'dist'}",
        f"PYI_WORK={tmp / 'work'}",
    ]
    online = subprocess.run(
        ["make", "--no-print-directory", "wheelhouse", *common, f"BUILD_VENV={tmp / 'wh-venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert online.returncode == 0, online.stdout + online.stderr
    # pip configured by the box (config files, PIP_FIND_LINKS to local wheels) must not help
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, DEB_COMPRESSION="none", BUNDLE_GZIP_LEVEL="1")
    isolated = os.geteuid() == 0 and shutil.which("unshare") is not None
    build = MakeBuild(common, env, isolated)
    proc = build.make("build")
    build.log = proc.stdout + proc.stderr
    assert proc.returncode == 0, build.log
    return build, tmp / "dist"


@pytest.fixture(scope="session")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> FrozenDist:
    existing = os.environ.get("HERON_FROZEN_DIST")
    if existing:
        dist = FrozenDist(Path(existing).resolve())
    else:
        build, root = offline_make_build(tmp_path_factory.mktemp("frozen"))
        dist = FrozenDist(root, build=build)
        for m in re.finditer(r"built \S+/heron-(\w+) in (\d+)s", build.log):
            dist.build_seconds[m.group(1)] = float(m.group(2))
    for role in ("manager", "agent"):
        assert dist.program(role).is_file(), f"no frozen heron-{role} in {dist.root}"
    sys.stderr.write(
        "\nfrozen one-dirs: "
        + ", ".join(
            f"heron-{r} {dist.size_mib(r):.0f} MiB"
            + (f" (built in {dist.build_seconds[r]:.0f} s)" if r in dist.build_seconds else "")
            for r in ("manager", "agent")
        )
        + "\n"
    )
    return dist


@pytest.fixture(scope="session")
def frozen_debs(frozen: FrozenDist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both .deb packages of the frozen build (uncompressed: the payload is what is tested)."""
    need("dpkg-deb")
    out = tmp_path_factory.mktemp("frozen-debs")
    run(
        ["bash", str(PACKAGING / "deb/build-deb.sh"), "--src", str(frozen.root), "--out", str(out)],
        env={"DEB_COMPRESSION": "none"},
        timeout=600,
    )
    return out


def clean_env(home: Path) -> dict[str, str]:
    """No Python anywhere: a minimal PATH, no PYTHON* variables, a private HOME."""
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
    }


class Netns:
    """A private network namespace (loopback only) that commands can be run in, if root."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("nsenter"):
            proc = subprocess.Popen(["unshare", "--net", "--", "sleep", "3600"])
            if self._wait_for_own_netns(proc.pid) and self._loopback_up(proc.pid):
                self.proc = proc
            else:
                proc.kill()
                proc.wait()

    @staticmethod
    def _wait_for_own_netns(pid: int) -> bool:
        # Until unshare(2) has run, the child still shares our namespace: entering it then would
        # configure (and later "isolate" into) the host's network.
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{pid}/ns/net") != mine:
                    return True
            except OSError:
                return False
            time.sleep(0.01)
        return False

    @staticmethod
    def _loopback_up(pid: int) -> bool:
        enter = ["nsenter", "-t", str(pid), "-n", "--"]
        up = subprocess.run([*enter, "ip", "link", "set", "lo", "up"], capture_output=True)
        show = subprocess.run(
            [*enter, "ip", "-o", "link", "show", "lo"], capture_output=True, text=True
        )
        return up.returncode == 0 and "UP" in show.stdout.split(">")[0]

    @property
    def isolated(self) -> bool:
        return self.proc is not None

    def wrap(self, cmd: list[str]) -> list[str]:
        if self.proc is None:
            return cmd
        return ["nsenter", "-t", str(self.proc.pid), "-n", "--", *cmd]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def netns() -> Iterator[Netns]:
    ns = Netns()
    yield ns
    ns.close()


def probe(ns: Netns, *args: str) -> dict[str, Any]:
    out = run(ns.wrap([sys.executable, str(NETCLIENT), *args]), timeout=STARTUP_LIMIT + 60).stdout
    return json.loads(out)


def stop(proc: subprocess.Popen[str], name: str, timeout: float = 30) -> tuple[str, str]:
    """SIGTERM `proc` and expect a clean exit (code 0) within `timeout`."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{name} did not stop within {timeout}s after SIGTERM\n{err[-3000:]}")
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    return out, err


def smoke_event(marker: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "Event": {
            "System": {
                "Provider": {"Name": "Microsoft-Windows-Sysmon"},
                "EventID": 1,
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Computer": "frozen-smoke",
                "TimeCreated": {"SystemTime": now},
            },
            "EventData": {
                "Image": "C:\\Windows\\System32\\cmd.exe",
                "CommandLine": f"cmd.exe /c echo {marker}",
                "ProcessGuid": "{5a0e1c2d-0000-4000-8000-000000000001}",
                "User": "SMOKE\\user",
            },
        }
    }


def test_one_dirs_exist_and_agent_has_no_manager_stack(frozen: FrozenDist) -> None:
    agent_dir = frozen.root / "heron-agent"
    leaked = [
        str(p.relative_to(agent_dir))
        for p in agent_dir.rglob("*")
        if any(p.name.lower().startswith(name) for name in FORBIDDEN_IN_AGENT)
    ]
    assert not leaked, leaked[:20]
    manager_dir = frozen.root / "heron-manager" / "_internal"
    assert list(manager_dir.glob("_duckdb*")) or list(manager_dir.glob("duckdb*"))
    assert (manager_dir / "pymisp" / "data" / "describeTypes.json").is_file()
    assert (manager_dir / "tantivy").is_dir()
    # Every resource file of our packages (console assets, default rules) is in the one-dir.
    resources = [
        p.relative_to(ROOT)
        for pkg in ("rules", "index", "appliance")
        for p in (ROOT / pkg).rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    missing = [str(r) for r in resources if not (manager_dir / r).is_file()]
    assert not missing, missing[:10]
    # Pure-Python modules live in the PYZ archive: the agent's must not hold the manager stack.
    from PyInstaller.archive.readers import CArchiveReader

    for role, forbidden in (
        ("agent", FORBIDDEN_IN_AGENT + ("appliance", "index")),
        ("manager", ("pytest", "hypothesis", "mypy", "agent")),
    ):
        exe = CArchiveReader(str(frozen.program(role)))
        pyz_names = [n for n in exe.toc if n.endswith(".pyz")]
        assert pyz_names, f"no PYZ in heron-{role}"
        modules: set[str] = set()
        for name in pyz_names:
            modules |= set(exe.open_embedded_archive(name).toc)
        bad = sorted(m for m in modules if m.split(".")[0] in forbidden)
        assert not bad, f"heron-{role} carries {bad[:20]}"
        ours = "agent" if role == "agent" else "appliance"
        assert any(m.startswith(ours + ".") for m in modules), f"heron-{role} lacks {ours}"
    sizes = {r: round(frozen.size_mib(r)) for r in ("manager", "agent")}
    assert sizes["agent"] < sizes["manager"], sizes


DEV_ONLY = {"pytest", "hypothesis", "schemathesis", "ruff", "mypy", "chdb", "selenium", "psycopg"}


def _built_by_make(frozen: FrozenDist) -> MakeBuild:
    if frozen.build is None:
        pytest.skip("HERON_FROZEN_DIST: these programs were built elsewhere")
    return frozen.build


def test_build_runs_offline_from_the_wheelhouse_with_runtime_deps_only(
    frozen: FrozenDist,
) -> None:
    build = _built_by_make(frozen)
    assert "--no-index --find-links" in build.log
    venv = Path(build.variables[0].split("=", 1)[1])
    listed = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        env=build.env,
    ).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert {"pyinstaller", "duckdb", "tantivy", "falcon"} <= names
    assert not names & DEV_ONLY, names & DEV_ONLY
    if not build.isolated:
        pytest.skip("built with --no-index, but a network namespace needs root")


def _recipes(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("bash ", "PYTHON="))]


def test_make_builds_each_artifact_once_then_nothing(frozen: FrozenDist) -> None:
    build = _built_by_make(frozen)
    proc = build.make("build", "deb", "offline-bundle")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the programs of the fixture's `make build` are reused: no PyInstaller run here
    ran = _recipes(proc.stdout)
    assert [r.split()[1] for r in ran] == [
        "packaging/deb/build-deb.sh",
        "packaging/offline/make-bundle.sh",
    ], ran
    # a second run has nothing to do, and `make -q` agrees
    assert _recipes(build.make("build", "deb", "offline-bundle").stdout) == []
    assert build.make("-q", "build", "deb", "offline-bundle").returncode == 0
    # an input rebuilds what depends on it, and only that
    changed = "packaging/offline/install.sh"
    assert build.make("-q", "-W", changed, "deb").returncode == 0
    assert build.make("-q", "-W", changed, "offline-bundle").returncode == 1
    assert build.make("-q", "-W", "packaging/deb/agent/postinst", "build").returncode == 0
    assert build.make("-q", "-W", "rules/__init__.py", "build").returncode == 1
    # the bundle holds each program once: in its .deb, nothing else of size
    dist = frozen.root
    [bundle] = dist.glob("heron-offline-*.tar.gz")
    with tarfile.open(bundle) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
    debs = [m for m in members if m.name.endswith(".deb")]
    assert len(debs) == 2
    assert sum(m.size for m in members if m not in debs) < 2**20, [m.name for m in members]


@pytest.mark.parametrize("role", ["manager", "agent"])
def test_version_flag(frozen: FrozenDist, role: str, tmp_path: Path) -> None:
    proc = run(
        [str(frozen.program(role)), "--version"],
        env=clean_env(tmp_path),
        cwd=Path("/"),
        check=False,
    )
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert proc.returncode == 0 and version in proc.stdout + proc.stderr, (
        f"heron-{role} --version: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-1500:]}"
    )


@pytest.mark.parametrize("role", ["manager", "agent"])
def test_runs_anywhere_without_python(frozen: FrozenDist, role: str, tmp_path: Path) -> None:
    # A copy in a fresh directory, run from `/` with no Python on PATH: one-dirs are relocatable.
    copy = tmp_path / "elsewhere"
    shutil.copytree(frozen.root / f"heron-{role}", copy, symlinks=True)
    env = clean_env(tmp_path)
    proc = run([str(copy / f"heron-{role}"), "--help"], env=env, cwd=Path("/"))
    assert f"heron-{role}" in proc.stdout
    if shutil.which("ldd"):
        libs = run(["ldd", str(copy / f"heron-{role}")], check=False).stdout
        assert "libpython" not in libs or str(copy) in libs


def test_frozen_manager_imports_sigma_rules(frozen: FrozenDist, tmp_path: Path) -> None:
    """pySigma and its YAML parser are in the frozen manager: a SigmaHQ rule imports."""
    rule = ROOT.parent / "shared/corpus/sigma/rules/windows/process_creation"
    src = rule / "proc_creation_win_whoami_priv_discovery.yml"
    if not src.is_file():
        pytest.skip(f"{src} is absent (../shared corpus)")
    pack = tmp_path / "sigma" / "rules" / "windows"
    pack.mkdir(parents=True)
    shutil.copy(src, pack)
    data, env = tmp_path / "data", clean_env(tmp_path)
    manager = str(frozen.program("manager"))
    run([manager, "init", "--json", "--data-dir", str(data)], env=env, cwd=Path("/"))
    out = run(
        [manager, "rules", "import", str(tmp_path / "sigma"), "--data-dir", str(data), "--json"],
        env=env,
        cwd=Path("/"),
    )
    result = json.loads(out.stdout)
    assert (result["imported"], result["rejected"]) == (1, []), out.stdout[-2000:]


def test_frozen_smoke_end_to_end(frozen: FrozenDist, netns: Netns, tmp_path: Path) -> None:
    manager, agent = str(frozen.program("manager")), str(frozen.program("agent"))
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    data, agent_data = tmp_path / "manager", tmp_path / "agent"
    admin, endpoint = ("127.0.0.1:21520", "127.0.0.1:21519") if netns.isolated else _free_ports()

    def cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run(netns.wrap(list(args)), env=env, cwd=Path("/"), timeout=timeout)

    if netns.isolated:  # loopback only: anything that tries to download fails loudly
        assert run(netns.wrap(["ip", "route", "show"])).stdout.strip() == ""
    init = json.loads(
        cmd(
            manager,
            "init",
            "--json",
            "--data-dir",
            str(data),
            "--admin-listen",
            admin,
            "--endpoint-listen",
            endpoint,
            "--server-name",
            "127.0.0.1",
            "--server-name",
            "localhost",
        ).stdout
    )
    api_key, ca = init["api_key"], str(data / "pki" / "ca.pem")
    token = json.loads(cmd(manager, "enroll", "token", "--json", "--data-dir", str(data)).stdout)

    # Start → first answered request. The 2 s start-up target is measured by
    # benchmarks/startup.py; here the manager only has to come up, however busy the box is.
    t0 = time.time()
    mgr = subprocess.Popen(
        netns.wrap([manager, "run", "--data-dir", str(data)]),
        env=env,
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = probe(netns, "wait", f"https://{admin}/healthz", ca, repr(t0), str(STARTUP_LIMIT))
    assert first["ok"], first
    sys.stderr.write(
        f"\nfrozen manager first request after {first['seconds']:.2f} s wall, "
        f"{_cpu_seconds(mgr.pid):.2f} s CPU (load {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs), network namespace: {netns.isolated}\n"
    )
    try:
        # The web console's page and assets are served from the bundled data files.
        page = probe(netns, "get", f"https://{admin}/console/", ca, "")
        assert page["status"] == 200 and "<html" in page["body"].lower(), page
        js = probe(netns, "get", f"https://{admin}/console/static/js/main.js", ca, "")
        assert js["status"] == 200 and "javascript" in js["type"], js

        enrolled = json.loads(
            cmd(
                agent,
                "enroll",
                "--data-dir",
                str(agent_data),
                "--manager",
                endpoint,
                "--token",
                token["token"],
                "--ca-sha256",
                token["ca_sha256"],
            ).stdout
        )
        marker = "heronfrozen" + uuid.uuid4().hex[:12]
        events = tmp_path / "events.jsonl"
        events.write_text(json.dumps(smoke_event(marker)) + "\n")
        config = tmp_path / "agent.toml"
        config.write_text(f'[general]\ndata_dir = "{agent_data}"\nlog_all = true\n')
        agt = subprocess.Popen(
            netns.wrap(
                [agent, "run", "-c", str(config), "--replay", str(events), "--rate", "2", "--loop"]
            ),
            env=env,
            cwd="/",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            found = _search_until(netns, admin, ca, api_key, marker, timeout=90)
            assert found, f"no forwarded event matched {marker}"
            edr = found[0]["Event"]["EdrData"]
            assert edr["Endpoint"]["UUID"] == enrolled["uuid"]
            assert found[0]["Event"]["EventData"]["CommandLine"].endswith(marker)
            none = probe(netns, "get", f"https://{admin}/search?q=nomatch{marker}", ca, api_key)
            assert none["status"] == 200 and none["body"]["data"]["total"] == 0
        finally:
            stop(agt, "heron-agent")
    finally:
        _, err = stop(mgr, "heron-manager")
    assert "shutting down" in err

    # After the clean stop the store opens offline and still finds the events.
    hits = cmd(manager, "search", marker, "--data-dir", str(data), "--limit", "5").stdout
    assert marker in hits
    # Nothing was fetched or cached at run time (DuckDB installs extensions under ~/.duckdb).
    assert not (home / ".duckdb").exists()
    assert not list(home.rglob("*extension*"))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds `pid` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_ports() -> tuple[str, str]:
    import socket

    ports = []
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"


def _search_until(
    ns: Netns, admin: str, ca: str, api_key: str, marker: str, timeout: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = probe(ns, "get", f"https://{admin}/search?q={marker}&limit=5", ca, api_key)
        assert res["status"] == 200, res
        events: list[dict[str, Any]] = res["body"]["data"]["events"]
        if events:
            return events
        time.sleep(1)
    return []


def test_debs_from_frozen_install_initialise_and_enroll_offline(
    frozen_debs: Path, tmp_path: Path
) -> None:
    """The air-gapped flow with the real programs: manager .deb, offline bundle, agent .deb."""
    need("dpkg", "systemctl")
    if os.geteuid() != 0:
        pytest.skip("installing into a throwaway root needs root")
    root = DpkgRoot(tmp_path / "root", tmp_path / "calls.log")
    [manager_deb] = frozen_debs.glob("heron-manager_*.deb")
    [agent_deb] = frozen_debs.glob("heron-agent_*.deb")
    root.dpkg("-i", str(manager_deb), env={"HERON_SERVER_NAMES": "mgr.example.org 10.0.0.5"})
    data = root.path / "var/lib/heron/manager"
    # The real `heron-manager init` ran from the postinst: CA, database, config, admin key.
    assert (data / "pki/ca.pem").is_file() and (data / "db/heron.duckdb").is_file()
    assert "mgr.example.org" in (data / "config.toml").read_text()
    assert json.loads((data / "initial-admin.json").read_text())["api_key"]
    uid = int(root.user("heron")[2])  # type: ignore[index]
    assert all(p.stat().st_uid == uid for p in data.rglob("*"))

    # The installed manager mints an offline enrollment bundle; the agent package enrolls with it.
    bundle = tmp_path / "bundle"
    minted = json.loads(
        run(
            [
                str(root.path / "opt/heron/manager/heron-manager"),
                "enroll",
                "bundle",
                "--json",
                "--data-dir",
                str(data),
                "--out",
                str(bundle),
            ],
            cwd=Path("/"),
        ).stdout
    )
    root.dpkg("-i", str(agent_deb), env={"HERON_ENROLL_BUNDLE": str(bundle)})
    identity = root.path / "var/lib/heron/agent/link/identity"
    assert (identity / "cert.pem").is_file() and (identity / "key.pem").is_file()
    assert json.loads((identity / "identity.json").read_text())["uuid"] == minted["uuid"]
    config = run(
        [
            str(root.path / "opt/heron/agent/heron-agent"),
            "config",
            "-c",
            str(root.path / "etc/heron/agent.toml"),
            "--dump",
        ]
    ).stdout
    assert 'data_dir = "/var/lib/heron/agent"' in config

    root.dpkg("-P", "heron-manager", "heron-agent")
    assert not [f for f in root.files() if "heron" in f]


def test_msi_from_the_linux_layout(frozen: FrozenDist, tmp_path: Path) -> None:
    # the Linux one-dir is staged as a fake Windows layout: this checks the MSI
    # tables for a real-sized payload, not an installable Windows build.
    need("wixl", "msiinfo")
    run(
        [
            "bash",
            str(PACKAGING / "windows/build-msi.sh"),
            "--src",
            str(frozen.root),
            "--out",
            str(tmp_path),
            "--allow-linux-layout",
        ],
        timeout=600,
    )
    for role in ("manager", "agent"):
        [msi] = tmp_path.glob(f"heron-{role}-*-x64.msi")
        rows = run(["msiinfo", "export", str(msi), "File"]).stdout.splitlines()[3:]
        count = sum(1 for p in (frozen.root / f"heron-{role}").rglob("*") if p.is_file())
        assert len(rows) == count
        assert "run --service" in run(["msiinfo", "export", str(msi), "ServiceInstall"]).stdout


def test_offline_bundle_from_frozen(frozen: FrozenDist, frozen_debs: Path, tmp_path: Path) -> None:
    need("sha256sum")
    run(
        [
            "bash",
            str(PACKAGING / "offline/make-bundle.sh"),
            "--src",
            str(frozen.root),
            "--packages",
            str(frozen_debs),
            "--out",
            str(tmp_path / "out"),
        ],
        env={"BUNDLE_GZIP_LEVEL": "1"},
        timeout=600,
    )
    [archive] = (tmp_path / "out").glob("heron-offline-*.tar.gz")
    run(["tar", "-xzf", str(archive), "-C", str(tmp_path)])
    [top] = [p for p in tmp_path.iterdir() if re.match(r"heron-offline-", p.name)]
    run(["bash", str(top / "install.sh"), "--verify-only"])
    # Each program is in the bundle once (in its .deb); --extract unpacks a runnable one-dir.
    assert not (top / "programs").exists()
    run(["bash", str(top / "install.sh"), "--extract", str(tmp_path / "x"), "manager"])
    program = tmp_path / "x/heron-manager/heron-manager"
    assert "heron-manager" in run([str(program), "--help"], env=clean_env(tmp_path)).stdout
