"""`Link`: the agent's connection to its manager, composed from the link parts.

It is an `EventSink` (`submit(event)` queues durably) and owns three threads once started:
the forwarder (spool → `/logs`), the command poller (`/commands`), and housekeeping (updates,
system information, artifact upload, certificate renewal), each with its own keep-alive
transport. `attach.attach(agent, config)` builds one for an `agent.seams.LinkedAgent` (the
`agent.service.Agent`) and plugs it in. The threads are restarted by `supervisor.Supervisor`;
the counters and rule-state reports are `reports.HealthReports`.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.commands import CommandContext
from agent.commands.system import find_tool

from .backoff import Backoff
from .config import LinkConfig
from .enroll import enroll_online, renew
from .errors import EnrollmentError, LinkError
from .forwarder import Forwarder, LinkState
from .health import health_event
from .hooks import LinkHooks
from .identity import Identity, IdentityStore, write_atomic
from .mtls import MtlsTransport
from .poller import CommandPoller
from .reports import HEALTH_INTERVAL, HealthReports
from .spool import Spool
from .supervisor import Supervisor
from .sysinfo import SysInfoReporter, collect
from .tools import ToolSync
from .transport import TlsShare, Transport
from .updates import Updater
from .upload import Uploader, UploadStats

logger = logging.getLogger(__name__)


class Link:
    """Durable forwarding, commands, updates and renewal for one enrolled agent."""

    def __init__(
        self,
        config: LinkConfig,
        state_dir: Path,
        *,
        hooks: LinkHooks | None = None,
        transport_factory: Callable[[], Transport] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.state_dir = Path(state_dir)
        self.hooks = hooks or LinkHooks()
        self.hostname = self.hooks.hostname or socket.gethostname()
        self.clock = clock
        self.wall = wall
        self.identity_store = IdentityStore(self.state_dir / "identity")
        self._tls = TlsShare()  # the connections resume each other's TLS session
        self._factory = transport_factory or self._mtls
        self._transports: list[Transport] = []
        self._stop = threading.Event()
        self.supervisor = Supervisor(self._stop, wall=wall, report=self._report)
        self.spool = Spool(
            self.state_dir / "queue",
            max_bytes=config.queue_max_bytes,
            segment_bytes=config.segment_bytes,
            segment_events=config.segment_events,
            max_batch_delay=config.batch_delay,
            fsync_interval=config.fsync_interval,
            hostname=self.hostname,
            clock=clock,
            min_free_bytes=config.queue_min_free_bytes,
        )
        # the forwarder and housekeeping share one connection (closed when idle,
        # resumed by TLS ticket); the long-poll holds the other one.
        house = self._transport()
        self.forwarder = Forwarder(
            self.spool,
            house,
            sleep=self._stop.wait,
            backoff=Backoff(config.backoff_base, config.backoff_cap, rand=rand),
            compresslevel=config.compress_level,
        )
        self.poller = CommandPoller(
            self._transport(),
            self.state_dir / "commands",
            context=self.command_context,
            interval=config.command_interval,
            burst_interval=config.command_burst_interval,
            burst_window=config.command_burst_window,
            clock=clock,
            sleep=self._stop.wait,
            wait=config.command_wait,
            timeout=config.timeout,
            rand=rand,
        )
        self.rand = rand
        hooks_by_item: dict[str, Callable[[Any], object] | None] = {
            "rules": self.hooks.reload_rules,
            "iocs": self.hooks.set_iocs,
            "suppressions": self.hooks.set_suppressions,
            "config": self._apply_config,
            "sysmon": self.hooks.apply_sysmon or self._apply_sysmon,
        }
        self.updater = Updater(
            house, self.state_dir / "updates", hooks_by_item, offer_config=self.hooks.current_config
        )
        sensor = self.hooks.sensor
        self.sysinfo = SysInfoReporter(
            house,
            self.state_dir / "sysinfo.sha256",
            collector=(lambda: {**collect(self.hostname), "sensor": sensor()})
            if sensor
            else (lambda: collect(self.hostname)),
        )
        self.uploader = (
            None
            if self.hooks.artifacts_dir is None
            else Uploader(
                house,
                self.hooks.artifacts_dir,
                max_size=config.upload_max_size,
                settle=config.upload_settle,
                clock=wall,
                report=self._report,
            )
        )
        self.tools = ToolSync(house, self.tools_dir)
        self.reports = HealthReports(
            self.spool,
            self.hostname,
            agent_status=self.hooks.agent_status,
            rules_state=self.hooks.rules_state,
            threads=self.supervisor.threads,
        )
        self._house = house
        # the first counter report after one interval: nothing to say at start
        self._due: dict[str, float] = {"counters": clock() + HEALTH_INTERVAL}
        self._known_uuid = ""
        self._tools_seen = ""

    # ---------------------------------------------------------------- wiring
    @property
    def tools_dir(self) -> Path:
        return Path(self.config.tools_dir) if self.config.tools_dir else self.state_dir / "tools"

    def _mtls(self) -> Transport:
        return MtlsTransport(
            self.identity_store,
            timeout=self.config.timeout,
            hostname=self.hostname,
            server_name=self.config.server_name,
            share=self._tls,
        )

    def _transport(self) -> Transport:
        t = self._factory()
        self._transports.append(t)
        return t

    def _report(self, data: dict[str, Any]) -> None:
        event_id = int(data.pop("EventID", 9000))
        self.spool.submit(
            health_event(event_id, str(data.pop("Message", "")), self.hostname, **data)
        )

    def _apply_config(self, doc: dict[str, Any]) -> None:
        link_part = doc.get("link")
        new = LinkConfig.from_dict(link_part) if isinstance(link_part, dict) else None
        if self.hooks.apply_config is not None:
            self.hooks.apply_config({k: v for k, v in doc.items() if k != "link"})
        if new is not None:
            self._apply_link_config(new)

    def _apply_link_config(self, new: LinkConfig) -> None:
        self.config = new
        self.poller.interval = new.command_interval
        self.poller.burst_interval = new.command_burst_interval
        self.poller.burst_window = new.command_burst_window
        self.poller.wait = new.command_wait
        self.forwarder.compresslevel = new.compress_level
        self.forwarder.backoff.base, self.forwarder.backoff.cap = new.backoff_base, new.backoff_cap
        self.spool.max_bytes = new.queue_max_bytes
        self.spool.min_free_bytes = new.queue_min_free_bytes
        logger.info("link settings updated from the manager")

    def _apply_sysmon(self, xml: str) -> None:
        """Default Sysmon hook: `sysmon -c FILE` when Sysmon is installed, else keep it stored."""
        ctx = self.command_context()
        exe = next(
            (t for t in (find_tool(n, ctx) for n in ("Sysmon64", "Sysmon", "sysmon")) if t), None
        )
        path = self.state_dir / "sysmon-config.xml"
        write_atomic(path, xml.encode("utf-8"))
        if exe is None:
            logger.info("Sysmon configuration stored in %s (Sysmon is not installed)", path)
            return
        proc = ctx.runner([exe, "-c", str(path)], 120.0)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{exe} -c failed ({proc.returncode}): "
                f"{proc.stderr.decode('utf-8', 'replace')[:300]}"
            )

    def command_context(self) -> CommandContext:
        ident = self.identity()
        return CommandContext(
            manager_host=ident.host if ident else "",
            manager_port=ident.port if ident else 0,
            tools_dir=self.tools_dir,
            allowed_tools=self.config.allowed_tools,
            tracker=self.hooks.tracker,
            report=self.hooks.report,
            max_fetch_size=self.config.max_fetch_size,
        )

    def identity(self) -> Identity | None:
        try:
            return self.identity_store.load()
        except (LinkError, OSError, ValueError, KeyError):
            return None

    def enroll(self, manager: str, token: str, **kwargs: Any) -> Identity:
        """Enroll this link's identity with a one-time token (see `enroll.enroll_online`)."""
        return enroll_online(manager, token, self.identity_store, hostname=self.hostname, **kwargs)

    def upload_artifacts(self, directory: Path | None = None) -> UploadStats:
        """Upload ready artifact directories now (default: the agent's artifacts dir)."""
        if directory is None and self.uploader is not None:
            return self.uploader.run_once()
        if directory is None:
            return UploadStats()
        return Uploader(
            self._house,
            directory,
            max_size=self.config.upload_max_size,
            settle=self.config.upload_settle,
            clock=self.wall,
            report=self._report,
        ).run_once()

    # ---------------------------------------------------------------- EventSink
    def submit(self, event: dict[str, Any]) -> None:
        """Queue one event durably; it is sent when the manager is reachable."""
        self.spool.submit(event)

    # ---------------------------------------------------------------- housekeeping
    def renew_if_due(self) -> bool:
        ident = self.identity()
        if ident is None or not ident.renewal_due(
            self.wall(), fraction=self.config.renew_fraction, before=self.config.renew_before
        ):
            return False
        logger.info("client certificate expires at %s: renewing", ident.not_after)
        try:
            renew(self.identity_store, self._house)
        except EnrollmentError as ex:
            logger.warning(
                "certificate renewal failed, retrying in %.0fs: %s",
                self.config.renew_check_interval,
                ex,
            )
            return False
        return True

    def sync_identity(self) -> str:
        """Tell the agent its endpoint uuid when it first appears or changes (re-enrollment)."""
        ident = self.identity()
        uid = ident.uuid if ident else ""
        if uid and uid != self._known_uuid:
            self._known_uuid = uid
            if self.hooks.set_endpoint is not None:
                self.hooks.set_endpoint(uid)
        return uid

    def _check_updates(self) -> dict[str, str]:
        out = self.updater.check()
        tools = self.updater.remote.get("tools")
        if tools and tools != self._tools_seen:
            if self._tools_seen:
                self._due["tools"] = 0.0  # the manager's tool set changed: sync now
            self._tools_seen = tools
        return out

    def housekeeping_once(self) -> dict[str, Any]:
        """Run every housekeeping task that is due; returns what ran and its outcome."""
        # the manager stretches update checks under load (X-Heron-Poll-After);
        # ±10 % jitter keeps a fleet started together from checking together.
        updates = max(self.config.update_interval, self.poller.poll_after, self.updater.poll_after)
        updates *= 0.9 + 0.2 * self.rand()
        tasks: dict[str, tuple[float, Callable[[], Any]]] = {
            "updates": (updates, self._check_updates),
            "sysinfo": (self.config.sysinfo_interval, self.sysinfo.run_once),
            "renew": (self.config.renew_check_interval, self.renew_if_due),
            "identity": (5.0, self.sync_identity),
            "rules_state": (2.0, self.reports.report_rules_state),
            "tools": (self.config.tools_interval, self.tools.run_once),
            "counters": (HEALTH_INTERVAL, self.reports.report_counters),
        }
        if self.uploader is not None:
            tasks["upload"] = (self.config.upload_interval, self.uploader.run_once)
        now = self.clock()
        out: dict[str, Any] = {}
        for name, (interval, fn) in tasks.items():
            if now < self._due.get(name, 0.0):
                continue
            try:
                out[name] = fn()
                self._due[name] = now + interval
            except LinkError as ex:
                out[name] = f"error: {ex}"
                self._due[name] = now + min(interval, 30.0)
                logger.debug("%s failed: %s", name, ex)
            except Exception as ex:
                logger.error("%s crashed", name, exc_info=True)
                out[name] = f"error: {ex}"
                self._due[name] = now + interval
        return out

    def write_status(self) -> None:
        """Write `status()` to `<state>/status.json` (read by `heron-agent link status`)."""
        try:
            doc = json.dumps(self.status(), indent=1, default=str).encode("utf-8")
            write_atomic(self.state_dir / "status.json", doc)
        except OSError:
            logger.debug("cannot write link status", exc_info=True)

    def _housekeeping(self) -> None:
        last_status = -1e18
        while not self._stop.is_set():
            self.housekeeping_once()
            close_idle = getattr(self._house, "close_idle", None)
            if close_idle is not None and self.config.idle_close > 0:
                close_idle(self.config.idle_close)
            if self.clock() - last_status >= 5.0:
                self.write_status()
                last_status = self.clock()
            nxt = min(self._due.values(), default=self.clock() + 1.0)
            self._stop.wait(max(0.05, min(nxt - self.clock(), 5.0)))

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Re-apply stored updates, then start the forwarder, poller and housekeeping threads."""
        self.sync_identity()
        restored = self.updater.restore()
        if restored:
            logger.info("re-applied stored updates: %s", ", ".join(restored))
        if not self.config.enabled:
            logger.warning("link disabled: events are queued locally only")
            return
        for name, target in (
            ("forwarder", self.forwarder.run),
            ("commands", self.poller.run),
            ("housekeeping", self._housekeeping),
        ):
            self.supervisor.start(name, target)
        logger.info("link started (state in %s)", self.state_dir)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads and close the spool; idempotent."""
        if self._stop.is_set() and self.spool._closed:
            return
        started = self.supervisor.started
        self._stop.set()
        self.forwarder.stop()
        self.poller.stop()
        self.supervisor.join(timeout)
        # only when the manager answered last time: an unreachable host would
        # hold the shutdown for a whole socket timeout, and the queue is durable anyway.
        if (
            started
            and self.config.drain_on_stop > 0
            and self.forwarder.state in (LinkState.CONNECTED, LinkState.UNKNOWN)
        ):
            self._final_drain(self.config.drain_on_stop)
        if started:
            self.write_status()
        self.spool.close()
        for tr in self._transports:
            close = getattr(tr, "close", None)
            if callable(close):
                close()

    def _final_drain(self, budget: float) -> None:
        """Best effort at shutdown: send what is queued for up to `budget` seconds."""
        deadline = self.clock() + budget
        sent = 0
        try:
            while self.clock() < deadline:
                res = self.forwarder.send_one(force=True)
                if res is None:
                    break
                sent += res.count
        except LinkError as ex:
            logger.info("final drain stopped: %s", ex)
        left = self.spool.stats().queued_events
        logger.info("link stopped: %d events sent at shutdown, %d kept queued", sent, left)

    close = stop

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def status(self) -> dict[str, Any]:
        ident = self.identity()
        st = self.spool.stats()
        return {
            "enrolled": ident is not None,
            "uuid": ident.uuid if ident else "",
            "manager": ident.manager if ident else "",
            "certificate_expires": ident.not_after if ident else None,
            "state": self.forwarder.state.value,
            "last_error": self.forwarder.last_error,
            "queue": {
                "events": st.queued_events,
                "bytes": st.queued_bytes,
                "evicted": st.evicted_events,
                "oversize_dropped": st.oversize_dropped,
                "rejected_batches": st.rejected_batches,
                "disk_dropped": st.disk_dropped,
                "disk_state": st.disk_state,
                "disk_error": st.disk_error,
                "lost_segments": st.lost_segments,
            },
            "sent": {"batches": self.forwarder.sent_batches, "events": self.forwarder.sent_events},
            "commands_executed": self.poller.executed,
            "threads": {k: dict(v) for k, v in self.supervisor.threads.items()},
            "updates": {
                k: {"applied": v.applied, "rejected": v.rejected, "error": v.error}
                for k, v in self.updater.status().items()
            },
        }
