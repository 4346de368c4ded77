"""Live eBPF sensor: real programs in this kernel, real processes, sockets, DNS and files.

One ``EbpfSource`` (agent pid 0: nothing filtered) serves the module; each test acts through
child processes carrying a unique marker and waits for the matching events (no fixed sleeps).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.host import make_host
from agent.sources.ebpf.events import EID
from agent.sources.ebpf.sensor import EbpfUnavailable, load_sensor
from agent.sources.ebpf.source import EbpfSource

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or os.geteuid() != 0, reason="needs root on Linux"
    ),
]

TOKEN = uuid.uuid4().hex[:10]
PY = sys.executable
Event = dict[str, Any]


class Collector:
    """Runs a source in a thread and keeps its events."""

    def __init__(self, source: EbpfSource) -> None:
        self.source = source
        self.events: list[Event] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            for ev in self.source.events():
                with self.cond:
                    self.events.append(ev)
                    self.cond.notify_all()
        except BaseException as ex:  # noqa: BLE001 - surfaced by wait()
            self.error = ex

    def wait(self, pred: Callable[[Event], bool], timeout: float = 15.0) -> Event:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                assert self.error is None, self.error
                if left <= 0:
                    raise AssertionError("no matching event")
                self.cond.wait(left)

    def all(self, pred: Callable[[Event], bool]) -> list[Event]:
        with self.cond:
            return [ev for ev in self.events if pred(ev)]


def eid(ev: Event) -> int:
    return int(ev["Event"]["System"]["EventID"])


def data(ev: Event) -> dict[str, Any]:
    return ev["Event"]["EventData"]


def match(event_id: int, **fields: str) -> Callable[[Event], bool]:
    """Events of ``event_id`` whose fields contain the values ("=value": equal to it)."""

    def pred(ev: Event) -> bool:
        if eid(ev) != event_id:
            return False
        d = data(ev)
        return all(
            str(d.get(k, "")) == v[1:] if v.startswith("=") else v in str(d.get(k, ""))
            for k, v in fields.items()
        )

    return pred


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = Path("/tmp") / f"heron-ebpf-{TOKEN}"
    base.mkdir()
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def sensor(workdir: Path) -> Iterator[Collector]:
    try:
        loaded = load_sensor(ringbuf_mb=16)
    except EbpfUnavailable as ex:
        pytest.skip(f"eBPF unavailable: {ex}")
    host = replace(make_host(), agent_pid=0)
    src = EbpfSource(host=host, sensor=loaded, prefixes=[f"{workdir}/watched/"])
    col = Collector(src)
    col.thread.start()
    probe = workdir / "probe"
    # ready once the programs are attached: an exec of a marker is seen
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        subprocess.run(["/bin/true", f"ready-{TOKEN}"], check=True)
        try:
            col.wait(match(1, CommandLine=f"ready-{TOKEN}"), timeout=0.5)
            break
        except AssertionError:
            continue
    probe.touch()
    yield col
    src.close()
    col.thread.join(10)


def py(code: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PY, "-c", textwrap.dedent(code)], check=False, **kw)


# --- processes ---------------------------------------------------------------------------------


def test_exec_fields_captured_in_kernel(sensor: Collector, workdir: Path) -> None:
    marker = f"exec-{TOKEN}"
    subprocess.run(["/bin/true", marker, "second arg"], cwd=workdir, check=True)
    ev = sensor.wait(match(1, CommandLine=marker))
    d = data(ev)
    assert d["Image"] == os.path.realpath("/bin/true")
    assert d["CommandLine"] == f"/bin/true {marker} second arg"
    assert d["CurrentDirectory"] == str(workdir)
    assert d["User"] == "root"
    assert d["ParentProcessId"] == str(os.getpid())
    # the test process predates the sensor: its GUID is the /proc-derived one (seeding agrees)
    me = sensor.source.host.pids.get(os.getpid())
    assert me is not None and d["ParentProcessGuid"] == me.guid
    exit_ev = sensor.wait(match(5, ProcessGuid=d["ProcessGuid"]))
    assert data(exit_ev)["ExitCode"] == "0"


def test_fork_only_parent_exit_codes_and_ancestry(sensor: Collector) -> None:
    marker = f"fork-{TOKEN}"
    proc = subprocess.run(["/bin/sh", "-c", f"( /bin/true {marker}; exit 4 ); exit 5"], check=False)
    assert proc.returncode == 5
    sh = sensor.wait(match(1, CommandLine=f"( /bin/true {marker}"))
    child = sensor.wait(match(1, CommandLine=f"=/bin/true {marker}"))
    sub_guid = data(child)["ParentProcessGuid"]
    fork = sensor.wait(match(EID.PROCESS_FORK, ProcessGuid=sub_guid))
    assert data(fork)["ParentProcessGuid"] == data(sh)["ProcessGuid"]
    assert data(fork)["Image"] == data(sh)["Image"]
    assert data(sensor.wait(match(5, ProcessGuid=sub_guid)))["ExitCode"] == "4"
    assert data(sensor.wait(match(5, ProcessGuid=data(sh)["ProcessGuid"])))["ExitCode"] == "5"
    # events come before the terminations of their processes
    order = [ev for ev in sensor.all(lambda e: data(e).get("ProcessGuid") == sub_guid)]
    assert eid(order[0]) == EID.PROCESS_FORK and eid(order[-1]) == 5


def test_signal_exit_and_reexec_guid(sensor: Collector) -> None:
    marker = f"reexec-{TOKEN}"
    subprocess.run(["/bin/sh", "-c", f"exec /bin/true {marker}"], check=True)
    sh = sensor.wait(match(1, CommandLine=f"exec /bin/true {marker}"))
    tr = sensor.wait(match(1, CommandLine=f"=/bin/true {marker}"))
    assert data(sh)["ProcessId"] == data(tr)["ProcessId"]
    assert data(sh)["ProcessGuid"] != data(tr)["ProcessGuid"]
    assert data(tr)["ParentProcessGuid"] != data(sh)["ProcessGuid"]
    exits = sensor.wait(match(5, ProcessId=data(tr)["ProcessId"]))
    assert data(exits)["ProcessGuid"] == data(tr)["ProcessGuid"]
    subprocess.run(["/bin/sh", "-c", f"kill -9 $$ # {marker}-kill"], check=False)
    killed = sensor.wait(match(1, CommandLine=f"{marker}-kill"))
    assert data(sensor.wait(match(5, ProcessGuid=data(killed)["ProcessGuid"])))["ExitCode"] == "137"


def test_short_lived_execs_all_recorded_in_full(sensor: Collector) -> None:
    marker = f"burst-{TOKEN}"
    n = 300
    script = "; ".join(f"/bin/true {marker}-{i}" for i in range(n))
    subprocess.run(["/bin/sh", "-c", script], check=True)
    sensor.wait(match(1, CommandLine=f"{marker}-{n - 1}"))
    seen = sensor.all(match(1, CommandLine=marker))
    full = {data(ev)["CommandLine"] for ev in seen if data(ev)["Image"] == "/usr/bin/true"}
    assert full >= {f"/bin/true {marker}-{i}" for i in range(n)}
    guids = [data(ev)["ProcessGuid"] for ev in seen if data(ev)["Image"] == "/usr/bin/true"]
    assert len(guids) == len(set(guids))


def test_memfd_and_deleted_file_exec(sensor: Collector, workdir: Path) -> None:
    marker = f"memfd-{TOKEN}"
    py(f"""
        import os
        fd = os.memfd_create("heron-{marker}", 0)
        os.write(fd, open("/bin/true", "rb").read())
        pid = os.fork()
        if pid == 0:
            os.execv(f"/proc/self/fd/{{fd}}", ["mfd", "{marker}"])
        os.waitpid(pid, 0)
    """)
    ev = sensor.wait(match(1, CommandLine=f"mfd {marker}"))
    assert data(ev)["Image"].startswith(f"/memfd:heron-{marker}")
    assert data(ev)["Image"].endswith(" (deleted)")
    copy = workdir / f"gone-{TOKEN}"
    shutil.copy("/bin/true", copy)
    py(f"""
        import os
        fd = os.open("{copy}", os.O_RDONLY)
        os.unlink("{copy}")
        pid = os.fork()
        if pid == 0:
            os.execv(f"/proc/self/fd/{{fd}}", ["gone", "{marker}-del"])
        os.waitpid(pid, 0)
    """)
    ev = sensor.wait(match(1, CommandLine=f"gone {marker}-del"))
    assert data(ev)["Image"] == f"{copy} (deleted)"


def test_ring_buffer_losses_counted_per_type(workdir: Path) -> None:
    """A one-page ring buffer that nobody reads overflows: the kernel counts each lost exec."""
    try:
        tiny = load_sensor(ringbuf_bytes=4096, files=False)
    except EbpfUnavailable as ex:
        pytest.skip(str(ex))
    try:
        tiny.configure(agent_pid=0, prefixes=[])
        tiny.attach(["on_exec"])
        subprocess.run(["/bin/sh", "-c", "; ".join(["/bin/true"] * 30)], check=True)
        assert tiny.losses().get("exec", 0) >= 10
    finally:
        tiny.close()


# --- network -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_tcp_connect_accept_bind(sensor: Collector, family: int, host: str) -> None:
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.bind((host, 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    marker = f"conn-{TOKEN}-{port}"
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            srv.settimeout(0.2)
            try:
                c, _ = srv.accept()
                c.close()
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    py(f"import socket; socket.create_connection(({host!r}, {port})).close()  # {marker}")
    done.set()
    t.join()
    srv.close()
    child = sensor.wait(match(1, CommandLine=marker))
    conn = sensor.wait(match(3, ProcessGuid=data(child)["ProcessGuid"]))
    d = data(conn)
    assert (d["Protocol"], d["Initiated"], d["DestinationIp"], d["DestinationPort"]) == (
        "tcp",
        "true",
        host,
        str(port),
    )
    assert d["SourceIsIpv6"] == ("true" if family == socket.AF_INET6 else "false")
    acc = sensor.wait(match(3, Initiated="false", SourcePort=str(port)))
    assert data(acc)["ProcessId"] == str(os.getpid())
    assert data(acc)["DestinationPort"] == d["SourcePort"]
    bind = sensor.wait(match(EID.SOCKET_BIND, SourcePort=str(port)))
    assert data(bind)["ProcessId"] == str(os.getpid())


def test_zero_ms_connections_all_seen(sensor: Collector) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    port = srv.getsockname()[1]
    n = 200
    py(f"""
        import socket
        for _ in range({n}):
            socket.create_connection(("127.0.0.1", {port})).close()
    """)
    srv.close()
    sensor.wait(
        lambda e: len(sensor.all(match(3, Initiated="true", DestinationPort=str(port)))) >= n
    )
    assert len(sensor.all(match(3, Initiated="true", DestinationPort=str(port)))) == n


def test_unconnected_udp_flow(sensor: Collector) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    py(f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(5):
            s.sendto(b"x", ("127.0.0.1", {port}))
    """)
    rx.close()
    sensor.wait(match(3, Protocol="udp", DestinationPort=str(port)))
    assert len(sensor.all(match(3, Protocol="udp", DestinationPort=str(port)))) == 1


# --- DNS ---------------------------------------------------------------------------------------


def _dns_answer(query: bytes, ip: str) -> bytes:
    qid = query[:2]
    question = query[12:]
    end = question.index(b"\0") + 5
    q = question[:end]
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
    return qid + b"\x81\x80" + struct.pack(">4H", 1, 1, 0, 0) + q + answer


def _dns_query(name: str, qid: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack(">6H", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", 1, 1)


@pytest.fixture(scope="module")
def dns_server() -> Iterator[str]:
    """A one-answer DNS server on 127.0.0.2:53 (UDP and TCP): every name → 127.0.0.3."""
    addr = "127.0.0.2"
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket()
    try:
        udp.bind((addr, 53))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((addr, 53))
    except OSError as ex:
        pytest.skip(f"cannot bind {addr}:53: {ex}")
    tcp.listen(8)
    stop = threading.Event()

    def serve_udp() -> None:
        udp.settimeout(0.2)
        while not stop.is_set():
            try:
                q, peer = udp.recvfrom(512)
            except TimeoutError:
                continue
            udp.sendto(_dns_answer(q, "127.0.0.3"), peer)

    def serve_tcp() -> None:
        tcp.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = tcp.accept()
            except TimeoutError:
                continue
            with c:
                n = struct.unpack(">H", c.recv(2))[0]
                q = c.recv(n)
                a = _dns_answer(q, "127.0.0.3")
                c.sendall(struct.pack(">H", len(a)) + a)

    threads = [threading.Thread(target=f, daemon=True) for f in (serve_udp, serve_tcp)]
    for t in threads:
        t.start()
    yield addr
    stop.set()
    for t in threads:
        t.join()
    udp.close()
    tcp.close()


def test_dns_udp_query_answer_and_hostname(sensor: Collector, dns_server: str) -> None:
    name = f"c2-{TOKEN}.evil.example"
    lst = socket.socket()
    lst.bind(("127.0.0.3", 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    py(f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto({_dns_query(name, 0x4242)!r}, ({dns_server!r}, 53))
        s.recvfrom(512)
        socket.create_connection(("127.0.0.3", {port})).close()
    """)
    lst.close()
    q = sensor.wait(match(22, QueryName=name))
    assert data(q)["QueryStatus"] == "0"
    assert data(q)["QueryResults"] == "::ffff:127.0.0.3;"
    conn = sensor.wait(match(3, DestinationPort=str(port), Initiated="true"))
    assert data(conn)["DestinationHostname"] == name
    assert data(conn)["ProcessGuid"] == data(q)["ProcessGuid"]


def test_dns_tcp_query(sensor: Collector, dns_server: str) -> None:
    name = f"tcp-{TOKEN}.example"
    query = _dns_query(name, 0x1313)
    py(f"""
        import socket, struct
        s = socket.create_connection(({dns_server!r}, 53))
        q = {query!r}
        s.sendall(struct.pack(">H", len(q)) + q)
        n = struct.unpack(">H", s.recv(2))[0]
        s.recv(n)
    """)
    q = sensor.wait(match(22, QueryName=name))
    assert data(q)["QueryResults"] == "::ffff:127.0.0.3;"


# --- files -------------------------------------------------------------------------------------


def test_file_events_recursive_under_prefix(sensor: Collector, workdir: Path) -> None:
    watched = workdir / "watched" / "deep" / "er"
    watched.mkdir(parents=True)
    outside = workdir / f"outside-{TOKEN}.txt"
    marker = f"files-{TOKEN}"
    py(f"""
        import os
        os.chdir({str(watched)!r})
        with open("new-{marker}.txt", "w") as fh:
            fh.write("x")
        os.rename("new-{marker}.txt", "../moved-{marker}.txt")
        os.chmod("../moved-{marker}.txt", 0o700)
        os.chown("../moved-{marker}.txt", 65534, 65534)
        os.unlink("../moved-{marker}.txt")
        open({str(outside)!r}, "w").close()
    """)
    base = workdir / "watched" / "deep"
    created = sensor.wait(match(11, TargetFilename=f"new-{marker}"))
    guid = data(created)["ProcessGuid"]
    assert data(created)["TargetFilename"] == str(watched / f"new-{marker}.txt")
    closed = sensor.wait(match(EID.FILE_ACCESS, TargetFilename=f"new-{marker}"))
    assert data(closed)["Operation"] == "close_write"
    ren = sensor.wait(match(EID.FILE_RENAME, TargetFilename=f"moved-{marker}"))
    assert data(ren)["SourceFilename"] == str(watched / f"new-{marker}.txt")
    assert data(ren)["TargetFilename"] == str(base / f"moved-{marker}.txt")
    chmod = sensor.wait(match(EID.FILE_ATTRIBUTES, Operation="chmod", TargetFilename=marker))
    assert data(chmod)["Mode"] == "0700"
    chown = sensor.wait(match(EID.FILE_ATTRIBUTES, Operation="chown", TargetFilename=marker))
    assert (data(chown)["OwnerUid"], data(chown)["OwnerGid"]) == ("65534", "65534")
    gone = sensor.wait(match(23, TargetFilename=f"moved-{marker}"))
    for ev in (closed, ren, chmod, chown, gone):
        assert data(ev)["ProcessGuid"] == guid  # one process, one GUID for every event type
    assert not sensor.all(match(11, TargetFilename=str(outside)))


# --- privileged operations ---------------------------------------------------------------------


def test_ptrace_attach(sensor: Collector) -> None:
    target = subprocess.Popen(["/bin/sleep", "30"])
    try:
        py(f"""
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.ptrace(16, {target.pid}, None, None) == 0  # PTRACE_ATTACH
            os.waitpid({target.pid}, 0)
            libc.ptrace(17, {target.pid}, None, None)  # PTRACE_DETACH
        """)
        ev = sensor.wait(match(10, TargetProcessId=str(target.pid)))
        assert data(ev)["GrantedAccess"] == "PTRACE_ATTACH"
        assert data(ev)["TargetImage"] == "/usr/bin/sleep"
        tgt = sensor.wait(match(1, ProcessId=str(target.pid)))
        assert data(ev)["TargetProcessGuid"] == data(tgt)["ProcessGuid"]
    finally:
        target.kill()
        target.wait()


def test_module_load_attempt(sensor: Collector, workdir: Path) -> None:
    ko = workdir / f"fake-{TOKEN}.ko"
    ko.write_bytes(b"\x7fELF not a module")
    py(f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open({str(ko)!r}, os.O_RDONLY)
        libc.syscall(313, fd, b"", 0)  # finit_module: refused, but attempted
    """)
    ev = sensor.wait(match(EID.KERNEL_MODULE_LOAD, ImageLoaded=str(ko)))
    assert data(ev)["Syscall"] == "finit_module"
    assert int(data(ev)["Result"]) < 0


def test_bpf_program_load(sensor: Collector) -> None:
    name = f"h{TOKEN[:8]}"
    py(f"""
        import ctypes, struct
        libc = ctypes.CDLL(None, use_errno=True)
        insns = ctypes.create_string_buffer(bytes.fromhex("b700000000000000" "9500000000000000"))
        lic = ctypes.create_string_buffer(b"GPL")
        attr = bytearray(128)
        struct.pack_into("<IIQQ", attr, 0, 1, 2, ctypes.addressof(insns), ctypes.addressof(lic))
        attr[48:48 + len({name!r})] = {name!r}.encode()
        buf = ctypes.create_string_buffer(bytes(attr), 128)
        fd = libc.syscall(321, 5, buf, 128)
        assert fd >= 0, ctypes.get_errno()
    """)
    ev = sensor.wait(match(EID.BPF_PROGRAM_LOAD, ProgramName=name))
    assert data(ev)["ProgramType"] == "socket_filter"


def test_setuid_transition(sensor: Collector) -> None:
    marker = f"setuid-{TOKEN}"
    py(f"""
        import os  # {marker}
        os.setgid(65534)
        os.setuid(65534)
    """)
    proc = sensor.wait(match(1, CommandLine=marker))
    guid = data(proc)["ProcessGuid"]
    uid = sensor.wait(match(EID.CREDENTIAL_CHANGE, ProcessGuid=guid, Syscall="setuid"))
    d = data(uid)
    assert (d["Arguments"], d["Uid"], d["EUid"], d["TargetUser"]) == (
        "65534",
        "65534",
        "65534",
        "nobody",
    )
    assert d["PreviousUid"] == "0"
    gid = sensor.wait(match(EID.CREDENTIAL_CHANGE, ProcessGuid=guid, Syscall="setgid"))
    assert data(gid)["Gid"] == "65534"


# --- the Linux rule pack and IoCs on what the sensor now sees ----------------------------------


@pytest.fixture(scope="module")
def engine() -> Any:
    import rules

    return rules.Engine(
        rules.load([Path(__file__).resolve().parents[3] / "appliance" / "defaults" / "linux.gen"])
    )


def _signatures(engine: Any, ev: Event) -> list[str]:
    import copy

    det = engine.match(copy.deepcopy(ev))
    return list(det.signatures) if det is not None else []


def test_rule_reverse_shell_socket_stdio(sensor: Collector, engine: Any) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    marker = f"revsh-{TOKEN}"
    py(f"""
        import os, socket
        s = socket.create_connection(("127.0.0.1", {port}))
        for fd in (0, 1, 2):
            os.dup2(s.fileno(), fd)
        os.execv("/bin/sh", ["sh", "-c", "exit 0", "{marker}"])
    """)
    srv.close()
    ev = sensor.wait(match(1, CommandLine=f"sh -c exit 0 {marker}"))
    assert data(ev)["Stdio"] == "socket,socket,socket"
    assert "LinuxEbpfReverseShellSocketStdio" in _signatures(engine, ev)
    # a process with ordinary stdio, started here (not borrowed from another test's events)
    subprocess.run(["/bin/true", f"plain-{TOKEN}"], check=True, stdin=subprocess.DEVNULL)
    normal = sensor.wait(match(1, CommandLine=f"=/bin/true plain-{TOKEN}"))
    assert "socket" not in data(normal)["Stdio"]
    assert "LinuxEbpfReverseShellSocketStdio" not in _signatures(engine, normal)


def test_domain_ioc_matches_dns_query(sensor: Collector, dns_server: str) -> None:
    from rules.iocs import IocSet

    name = f"beacon-{TOKEN}.bad.example"
    py(f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto({_dns_query(name, 0x0707)!r}, ({dns_server!r}, 53))
        s.recvfrom(512)
    """)
    ev = sensor.wait(match(22, QueryName=name))
    iocs = IocSet.from_iocs([{"type": "domain", "value": "bad.example"}])
    assert [h.type for h in iocs.match(ev)] == ["domain"]


def test_rule_persistence_files(sensor: Collector, engine: Any, workdir: Path) -> None:
    """Writes under the real cron/ssh paths are matched (files are removed right after)."""
    cron = Path("/etc/cron.d") / f"heron-test-{TOKEN}"
    ssh = Path("/root/.ssh") / "authorized_keys"
    if not cron.parent.is_dir():
        pytest.skip("no /etc/cron.d")
    src = EbpfSource(
        host=replace(make_host(), agent_pid=0),
        sensor=load_sensor(files=True),
        prefixes=["/etc/cron.d/", "/root/.ssh/"],
    )
    col = Collector(src)
    col.thread.start()
    had_ssh = ssh.exists()
    try:
        deadline = time.monotonic() + 30
        probe = Path("/etc/cron.d") / f".heron-probe-{TOKEN}"
        while time.monotonic() < deadline:  # attached once a probe create is seen
            probe.touch()
            probe.unlink()
            try:
                col.wait(match(11, TargetFilename=str(probe)), timeout=0.5)
                break
            except AssertionError:
                continue
        py(f"open({str(cron)!r}, 'w').write('* * * * * root /bin/true\\n')")
        ev = col.wait(match(11, TargetFilename=str(cron)))
        assert "LinuxEbpfCronPersistenceFile" in _signatures(engine, ev)
        ssh.parent.mkdir(mode=0o700, exist_ok=True)
        py(f"open({str(ssh)!r}, 'a').close()")
        ev = col.wait(match(EID.FILE_ACCESS, TargetFilename=str(ssh)))
        assert "LinuxEbpfSshAuthorizedKeys" in _signatures(engine, ev)
    finally:
        cron.unlink(missing_ok=True)
        if not had_ssh:
            ssh.unlink(missing_ok=True)
        src.close()
        col.thread.join(10)


def test_closed_sensor_keeps_its_counters() -> None:
    """The agent writes a last status after closing its sources: no use of a freed object."""
    s = load_sensor(files=False)
    s.configure(agent_pid=0, prefixes=[])
    s.close()
    assert s.losses() == {}
    s.close()  # idempotent
    with pytest.raises(OSError, match="closed"):
        s.obj.map_fd("rb")
