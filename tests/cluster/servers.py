"""Start real ClickHouse, ZooKeeper and PostgreSQL servers on loopback in temp dirs (tests,
benchmarks).

ClickHouse: ``clickhouse-server --config-file`` with a generated minimal config (Debian's
18.16 reads ``<yandex>`` configs; current releases still accept that root). Every instance
knows the ``heron`` cluster of all instances (one shard each, or shards of replicas), so a
``Distributed`` table on any of them reads them all. Replicas also get the ZooKeeper node,
their ``{shard}``/``{replica}`` macros and an interserver port. ZooKeeper: Debian's
``zookeeper`` (3.8) jars run standalone by ``java``. PostgreSQL: ``initdb`` + ``pg_ctl`` on a
free port, trust auth on loopback only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port as free_port
from tests.support.waiting import wait_for

CH_BIN = shutil.which("clickhouse-server") or shutil.which("clickhouse")
PG_BIN = next(
    (
        p
        for p in (Path(f"/usr/lib/postgresql/{v}/bin") for v in (17, 16, 15))
        if (p / "initdb").exists()
    ),
    None,
)
HUNTER_PASSWORD = "hunt-pw"


def _wait(check: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    wait_for(check, timeout, f"{what} to start", interval=0.1)


def _launch(
    argv: list[str], root: Path, log_name: str, ready: Callable[[], bool], what: str
) -> subprocess.Popen[bytes]:
    """Start a server in ``root`` (output to ``root/log_name``) and wait until ``ready``."""
    with open(root / log_name, "ab") as log:
        proc = subprocess.Popen(
            argv, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait(lambda: ready() or proc.poll() is not None, f"{what} in {root}")
        if not ready():
            raise RuntimeError(f"{what} failed: see {root}/{log_name}")
    except BaseException:
        _stop(proc)  # never leave a server running that no fixture will stop
        raise
    return proc


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate a server (killed after 30 s) and reap it."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class ClickHouse:
    root: Path
    http_port: int
    tcp_port: int
    proc: subprocess.Popen[bytes] | None = None
    shard: int = 0
    replica: int = 0
    interserver_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> None:
        argv = [str(CH_BIN), "--config-file", str(self.root / "config.xml")]
        self.proc = _launch(argv, self.root, "stdout.log", self.up, "clickhouse-server")

    def stop(self) -> None:
        _stop(self.proc)

    def zookeeper_up(self) -> bool:
        """The server answers a query on ``system.zookeeper`` (its session is established)."""
        query = urllib.parse.urlencode(
            {"query": "SELECT count() FROM system.zookeeper WHERE path = '/'"}
        )
        try:
            with urllib.request.urlopen(f"{self.url}/?{query}", timeout=5) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        """kill -9 (the server gets no chance to finish anything)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _ch_config(node: ClickHouse, nodes: list[ClickHouse], zookeeper: int | None) -> str:
    shards: dict[int, list[ClickHouse]] = {}
    for other in nodes:
        shards.setdefault(other.shard, []).append(other)
    internal = "<internal_replication>true</internal_replication>" if zookeeper else ""
    replicas = "".join(
        f"<shard>{internal}"
        + "".join(
            f"<replica><host>127.0.0.1</host><port>{r.tcp_port}</port></replica>" for r in members
        )
        + "</shard>"
        for _, members in sorted(shards.items())
    )
    replication = ""
    if zookeeper:
        replication = f"""
  <zookeeper><node><host>127.0.0.1</host><port>{zookeeper}</port></node>
    <session_timeout_ms>{ZK_SESSION_MS}</session_timeout_ms></zookeeper>
  <macros><shard>{node.shard + 1:02d}</shard><replica>r{node.replica + 1}</replica></macros>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>{node.interserver_port}</interserver_http_port>"""
    r = node.root
    return f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{r}/server.log</log><errorlog>{r}/error.log</errorlog>
    <console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{node.http_port}</http_port>
  <tcp_port>{node.tcp_port}</tcp_port>
  <path>{r}/data/</path>
  <tmp_path>{r}/tmp/</tmp_path>
  <user_files_path>{r}/user_files/</user_files_path>
  <format_schema_path>{r}/format_schemas/</format_schema_path>
  <users_config>{r}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <remote_servers><heron>{replicas}</heron></remote_servers>{replication}
</yandex>
"""


_USERS = f"""<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>2000000000</max_memory_usage></default>
    <hunt><readonly>1</readonly><max_execution_time>3</max_execution_time>
      <max_result_rows>10001</max_result_rows><result_overflow_mode>break</result_overflow_mode>
      <max_memory_usage>1000000000</max_memory_usage></hunt>
  </profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota></default>
    <hunter><password>{HUNTER_PASSWORD}</password><networks><ip>127.0.0.1</ip><ip>::1</ip>
      </networks><profile>hunt</profile><quota>default</quota></hunter>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
    </interval></default></quotas>
</yandex>
"""


def start_clickhouse(
    base: Path, n: int, *, replicas: int = 1, zookeeper: int | None = None
) -> list[ClickHouse]:
    """Start ``n`` shards of the ``heron`` cluster, each of ``replicas`` servers (replicas
    need the ``zookeeper`` port); the servers in shard order, a shard's replicas together."""
    if CH_BIN is None:
        raise FileNotFoundError("clickhouse-server is not installed (.ci/sysdeps.sh)")
    if replicas > 1 and zookeeper is None:
        raise ValueError("replicas need ZooKeeper")
    nodes = [
        ClickHouse(
            base / f"ch{shard}-{rep}" if replicas > 1 else base / f"ch{shard}",
            free_port(),
            free_port(),
            shard=shard,
            replica=rep,
            interserver_port=free_port() if zookeeper else 0,
        )
        for shard in range(n)
        for rep in range(replicas)
    ]
    for node in nodes:
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (node.root / sub).mkdir(parents=True, exist_ok=True)
        (node.root / "config.xml").write_text(_ch_config(node, nodes, zookeeper))
        (node.root / "users.xml").write_text(_USERS)
    started: list[ClickHouse] = []
    try:
        for node in nodes:
            node.start()
            started.append(node)
        if zookeeper:  # a replicated CREATE needs the server's ZooKeeper session up
            for node in nodes:
                _wait(lambda n=node: n.zookeeper_up(), f"ZooKeeper session of {node.root}")
    except BaseException:
        for node in started:
            node.stop()
        raise
    return nodes


# ZooKeeper: Debian's package (its /etc/zookeeper/conf/environment runs this jar).
ZK_JAR = Path("/usr/share/java/zookeeper.jar")
JAVA = shutil.which("java")
ZK_SESSION_MS = 10_000  # a killed replica's session (and its is_active node) expires in 10 s


def zookeeper_missing() -> str | None:
    """Why a ZooKeeper cannot be started here, or None."""
    if JAVA is None:
        return "java is not installed (bash .ci/sysdeps.sh installs a headless JRE)"
    if not ZK_JAR.exists():
        return "zookeeper is not installed (bash .ci/sysdeps.sh installs Debian's zookeeper)"
    return None


@dataclass
class ZooKeeper:
    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def ok(self) -> bool:
        """The ``ruok`` four-letter command answers ``imok``."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"ruok")
                return sock.recv(16) == b"imok"
        except OSError:
            return False

    def start(self) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "zoo.cfg").write_text(
            f"tickTime=1000\ndataDir={self.root / 'data'}\nclientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n"
            f"minSessionTimeout=2000\nmaxSessionTimeout={ZK_SESSION_MS}\n"
            "4lw.commands.whitelist=ruok,srvr\n"
        )
        argv = [
            str(JAVA),
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # Performance: start-up, not peak speed
            "-Dzookeeper.log.dir=" + str(self.root),
            "-cp",
            str(ZK_JAR),  # its manifest names the dependencies' jars
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(self.root / "zoo.cfg"),
        ]
        self.proc = _launch(argv, self.root, "zookeeper.log", self.ok, "zookeeper")

    def stop(self) -> None:
        _stop(self.proc)


def start_zookeeper(base: Path) -> ZooKeeper:
    """A standalone ZooKeeper on a free loopback port."""
    reason = zookeeper_missing()
    if reason:
        raise FileNotFoundError(reason)
    zk = ZooKeeper(base / "zookeeper", free_port())
    zk.start()
    return zk


@dataclass
class Postgres:
    root: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=heron dbname=heron"

    def _run(self, *args: str) -> None:
        # PostgreSQL refuses to run as root: as root, run it as the packaged ``postgres`` user.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, env=self.env)

    def start(self) -> None:
        assert PG_BIN is not None
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.root / "data"),
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=on -c max_connections=100",
            "start",
        )

    def stop(self) -> None:
        assert PG_BIN is not None
        try:
            self._run(
                str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"
            )
        except subprocess.CalledProcessError:
            pass


def start_postgres(base: Path) -> Postgres:
    """initdb + pg_ctl start on a free port (as a non-root user when run as root)."""
    if PG_BIN is None:
        raise FileNotFoundError("PostgreSQL is not installed (.ci/sysdeps.sh)")
    # NOTE: pytest's tmp dirs are 0700 root: as root, the data dir lives in its own temp dir
    # owned by ``postgres`` (removed by stop_postgres).
    root = Path(tempfile.mkdtemp(prefix="heron-pg-")) if os.geteuid() == 0 else base / "pg"
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    pg = Postgres(root, free_port(), env)
    (root / "data").mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "data", "postgres")
    pg._run(
        str(PG_BIN / "initdb"),
        "-D",
        str(root / "data"),
        "-U",
        "heron",
        "-A",
        "trust",
        "--no-sync",
        "-E",
        "UTF8",
    )
    pg.start()
    subprocess.run(
        [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "heron", "heron"],
        check=True,
        capture_output=True,
        env=env,
    )
    return pg


def fresh_database(pg: Postgres) -> str:
    """A new empty database on ``pg`` (a test whose fleet must start empty); its DSN."""
    assert PG_BIN is not None
    name = f"heron_{uuid.uuid4().hex[:12]}"
    subprocess.run(
        [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "heron", name],
        check=True,
        capture_output=True,
        env=pg.env,
    )
    return f"host=127.0.0.1 port={pg.port} user=heron dbname={name}"


def stop_postgres(pg: Postgres) -> None:
    pg.stop()
    if pg.root.name.startswith("heron-pg-"):
        shutil.rmtree(pg.root, ignore_errors=True)
