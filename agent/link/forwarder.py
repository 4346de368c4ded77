"""The forwarder: drains the spool to `POST /logs` as gzip NDJSON, exactly once.

Each sealed spool segment is one batch with a stable id sent in `X-Heron-Batch-Id`; the manager
journals it and answers 200 (a re-sent id answers 200 with `duplicate=true`), and only then is the
segment deleted. Failures back off exponentially with jitter; nothing is dropped on failure.
A 413 (the manager caps events and estimated memory per batch) splits the batch in halves, sent
as `<id>.0` / `<id>.1` (deterministic, so a replay deduplicates); a single event that still does
not fit, like any other 4xx but 401/403/408/429, is final: quarantined under `rejected/` and
counted, never retried forever.
The forwarder is an `EventSink` (`submit(event)`), so the agent pipeline hands it every event.
Under load the manager's answers carry `X-Heron-Batch-After`: open batches then wait that long
(bounded, `batch_delay()`), so the same events go in fewer requests; without it, as configured.
"""

from __future__ import annotations

import enum
import gzip
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from rules import wire

from .backoff import Backoff
from .errors import BatchError, CertificateRejected, HTTPStatusError, LinkError
from .health import HEALTH_REJECTED, health_event
from .segments import Lane
from .spool import Batch, Spool
from .transport import Request, Transport

logger = logging.getLogger(__name__)

# Statuses meaning "who are you?": our certificate is not (or no longer) accepted.
AUTH_REJECTS = frozenset({401, 403, 495, 496})
# 4xx statuses that are worth a retry (time-out, rate limit); every other 4xx is final.
RETRY_4XX = frozenset({408, 429})


def is_final(status: int) -> bool:
    """True when a batch answered `status` will never be accepted: quarantine it."""
    return 400 <= status < 500 and status not in AUTH_REJECTS and status not in RETRY_4XX


class LinkState(enum.Enum):
    """What the forwarder last learnt about the manager."""

    UNKNOWN = "unknown"  # nothing sent yet
    CONNECTED = "connected"  # last batch acknowledged
    UNREACHABLE = "unreachable"  # network error or 5xx: retrying with backoff
    CERT_REJECTED = "cert-rejected"  # TLS refused or 401/403: certificate rejected or revoked


@dataclass(frozen=True, slots=True)
class SendResult:
    """Outcome of one successful `send_one`."""

    batch_id: str
    count: int
    duplicate: bool


def encode_batch(batch: Batch, *, compresslevel: int = 3) -> Request:
    """Turn a spool batch into the `POST /logs` request."""
    return encode_lines(batch.data, batch.batch_id, compresslevel=compresslevel)


def encode_lines(data: bytes, batch_id: str, *, compresslevel: int = 3) -> Request:
    """`POST /logs` of NDJSON `data` under `batch_id`."""
    body = gzip.compress(data, compresslevel=compresslevel, mtime=0)
    return Request(
        "POST",
        wire.ROUTE_LOGS,
        body,
        {
            "Content-Type": wire.CONTENT_NDJSON,
            "Content-Encoding": wire.ENCODING_GZIP,
            wire.HEADER_BATCH_ID: batch_id,
        },
    )


def batch_delay(configured: float, headers: Mapping[str, str]) -> float:
    """The manager's `X-Heron-Batch-After` (sent under load) within [configured, MAX_BATCH_AFTER];
    no advice: as configured."""
    try:
        advised = float(headers.get(wire.HEADER_BATCH_AFTER.lower(), "") or 0.0)
    except ValueError:
        advised = 0.0
    if advised != advised:  # NaN
        advised = 0.0
    return max(configured, min(advised, wire.MAX_BATCH_AFTER))


class Forwarder:
    """Sends spooled batches through a `Transport`; `run()` loops until stopped."""

    def __init__(
        self,
        spool: Spool,
        transport: Transport,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], object] | None = None,
        idle_interval: float = 0.5,
        compresslevel: int = 3,
        on_activity: Callable[[], None] | None = None,
    ) -> None:
        self.spool = spool
        self.batch_delay = spool.max_batch_delay  # configured; the manager may stretch it
        self.transport = transport
        self.backoff = backoff or Backoff()
        self._stop = threading.Event()
        self.sleep = sleep or self._stop.wait
        self.idle_interval = idle_interval
        self.compresslevel = compresslevel
        self.on_activity = on_activity
        self.state = LinkState.UNKNOWN
        self.sent_batches = 0
        self.sent_events = 0
        self.split_batches = 0  # batches the manager found too large, sent in parts
        self.quarantined_events = 0  # events in parts the manager refused for good
        self.last_error = ""

    # EventSink
    def submit(self, event: dict[str, Any]) -> None:
        """Queue one event durably."""
        self.spool.submit(event)

    def send_one(self, *, force: bool = False) -> SendResult | None:
        """Send the next batch; None when there is nothing to send.

        Raises:
            CertificateRejected: the manager refused our certificate (batch kept).
            LinkError: any other delivery failure (batch kept, first in line).
        """
        batch = self.spool.next_batch(force=force)
        if batch is None:
            return None
        try:
            resp = self.transport.send(encode_batch(batch, compresslevel=self.compresslevel))
        except BaseException:
            self.spool.release(batch)
            raise
        self.spool.max_batch_delay = batch_delay(self.batch_delay, resp.headers)
        if resp.status == 200:
            duplicate = False
            if resp.body:
                try:
                    duplicate = bool(orjson.loads(resp.body).get("duplicate", False))
                except (orjson.JSONDecodeError, AttributeError):
                    pass
            self.spool.ack(batch)
            self.sent_batches += 1
            self.sent_events += batch.count
            return SendResult(batch.batch_id, batch.count, duplicate)
        if resp.status == 413 and batch.count > 1:
            lines = [line for line in batch.data.splitlines(keepends=True) if line.strip()]
            self.split_batches += 1
            try:
                sent = self._send_parts(batch, lines, batch.batch_id)
            except BaseException:
                self.spool.release(batch)  # parts already sent come back duplicate
                raise
            self.spool.ack(batch)
            self.sent_batches += 1
            self.sent_events += sent
            return SendResult(batch.batch_id, sent, False)
        if is_final(resp.status):
            self.spool.reject(batch, f"HTTP {resp.status}: {resp.body[:300]!r}")
            return SendResult(batch.batch_id, 0, False)
        self.spool.release(batch)
        raise self._failure(resp.status, resp.body, batch.batch_id)

    def _send_parts(self, batch: Batch, lines: list[bytes], batch_id: str) -> int:
        """Send `lines` in two halves, recursively while the manager answers 413."""
        sent = 0
        mid = max(1, len(lines) // 2)
        for suffix, part in ((".0", lines[:mid]), (".1", lines[mid:])):
            if not part:
                continue
            part_id = batch_id + suffix
            resp = self.transport.send(
                encode_lines(b"".join(part), part_id, compresslevel=self.compresslevel)
            )
            if resp.status == 200:
                sent += len(part)
            elif resp.status == 413 and len(part) > 1:
                sent += self._send_parts(batch, part, part_id)
            elif is_final(resp.status):
                self._quarantine(batch, part, part_id, resp.status, resp.body)
            else:
                raise self._failure(resp.status, resp.body, part_id)
        return sent

    def _quarantine(
        self, batch: Batch, part: list[bytes], part_id: str, status: int, body: bytes
    ) -> None:
        """Keep a refused part under the spool's `rejected/`, count it and report it."""
        reason = f"HTTP {status}: {body[:300]!r}"
        path = self.spool.root / "rejected" / f"{batch.path.stem}-{part_id.rsplit('-', 1)[-1]}.seg"
        path.write_bytes(b"".join(part))
        self.quarantined_events += len(part)
        logger.warning(
            "manager refused %d event(s) of batch %s for good: %s; kept in %s",
            len(part),
            part_id,
            reason,
            path,
        )
        report = health_event(
            HEALTH_REJECTED,
            "manager rejected a batch",
            self.spool.hostname,
            BatchId=part_id,
            DroppedEvents=len(part),
            Reason=reason[:500],
        )
        self.spool.submit_line(orjson.dumps(report) + b"\n", Lane.DETECTIONS)

    @staticmethod
    def _failure(status: int, body: bytes, batch_id: str) -> LinkError:
        if status in AUTH_REJECTS:
            return CertificateRejected(
                f"manager answered {status}: certificate probably rejected/revoked",
                path=wire.ROUTE_LOGS,
            )
        return BatchError(
            str(HTTPStatusError(status, body, path=wire.ROUTE_LOGS)), batch_id=batch_id
        )

    def drain(self, *, force: bool = True) -> int:
        """Send until the spool is empty (raises on the first failure); returns events sent."""
        total = 0
        while (res := self.send_one(force=force)) is not None:
            total += res.count
        return total

    def step(self) -> float:
        """One loop iteration: send what is due; return how long to wait before the next."""
        try:
            res = self.send_one()
        except CertificateRejected as ex:
            self._set_state(LinkState.CERT_REJECTED, str(ex))
            return self.backoff.next_delay()
        except LinkError as ex:
            self._set_state(LinkState.UNREACHABLE, str(ex))
            return self.backoff.next_delay()
        if res is None:
            return self.idle_interval
        self.backoff.reset()
        self._set_state(LinkState.CONNECTED, "")
        if self.on_activity is not None:
            self.on_activity()
        return 0.0

    def _set_state(self, state: LinkState, error: str) -> None:
        self.last_error = error
        if state is self.state:
            return
        queued = self.spool.stats().queued_events
        if state is LinkState.CERT_REJECTED:
            logger.error(
                "manager refused our certificate (%s); it was probably revoked or "
                "re-issued: re-enroll this agent. Buffering events (%d queued).",
                error,
                queued,
            )
        elif state is LinkState.UNREACHABLE:
            logger.warning("manager unreachable (%s); buffering events (%d queued)", error, queued)
        elif state is LinkState.CONNECTED and self.state is not LinkState.UNKNOWN:
            logger.info("manager reachable again; replaying %d queued events", queued)
        self.state = state

    def run(self) -> None:
        """Loop until `stop()`; the spool keeps everything that was not acknowledged.

        An unexpected error (a vanished file, a full disk, a bug) never ends the loop: it is
        logged once per distinct error, kept in `last_error`, and the step is retried with
        backoff. A crash that escapes anyway is restarted by the link's supervisor.
        """
        last = ""
        while not self._stop.is_set():
            try:
                delay = self.step()
                self.spool.flush()
                last = ""
            except Exception as ex:  # noqa: BLE001 - keep forwarding alive
                err = f"{type(ex).__name__}: {ex}"
                if err != last:
                    logger.error("forwarder error (retrying with backoff): %s", err)
                    last = err
                self.last_error = err
                delay = self.backoff.next_delay()
            if delay > 0:
                self.sleep(delay)

    def stop(self) -> None:
        self._stop.set()
