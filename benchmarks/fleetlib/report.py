"""The fleet benchmark's printed report: a line per run, its ramp, and the issue's table."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def print_run(res: dict[str, Any]) -> None:
    """One run's figures on one line, then its ramp."""
    print(
        f"N={res['n']:,} code={res['code']} old-share={res['old_share']:g} "
        f"senders={res['senders']}: "
        f"connected {res.get('connected', 0):,}, manager CPU "
        f"{res.get('manager_cpu')} % RSS {res.get('manager_rss_mb')} MB, "
        f"{res.get('bytes_per_conn', 0):,} B/idle conn, requests "
        f"{res.get('requests', 0):,} {res.get('request_ms')}, commands "
        f"{res.get('delivered', 0)}/{res.get('commands', 0)} "
        f"{res.get('command_ms')} old agents {res.get('old_command_ms')}, "
        f"events acked {res.get('events', 0):,} (offered "
        f"{res.get('offered_events_s', 0):,}/s, stored "
        f"{res.get('stored_events_s', 0):,}/s), /logs {res.get('logs_ms')}, handshakes "
        f"{res.get('handshakes', 0):,} (resumed {res.get('resumed', 0):,}, on "
        f"polling connections {res.get('poll_handshakes', 0):,}), "
        f"errors {res.get('errors')}, fleet CPU {res.get('fleet_cpu')} %",
        flush=True,
    )
    print_ramp(res)


def print_ramp(res: dict[str, Any]) -> None:
    print(
        f"  ramp: {res.get('connected', 0):,} connected in {res.get('ramp_s')} s, "
        f"handshakes {res.get('ramp_handshakes', 0):,} (resumed {res.get('ramp_resumed', 0):,}) "
        f"{res.get('ramp_handshake_ms')} ms, manager {res.get('ramp_manager_cpu_s')} CPU-s "
        f"({res.get('ramp_manager_ms_per_agent')} ms per agent), fleet "
        f"{res.get('ramp_fleet_cpu_s')} CPU-s, errors {res.get('ramp_errors')}",
        flush=True,
    )


def print_table(rows: list[dict[str, Any]]) -> None:
    """The issue's figures, one row per run (idle CPU: the measurement window after settle)."""
    print(
        "\n| code | endpoints | connected (ramp) | manager CPU | RSS | bytes per idle connection "
        "| command p50 / p95 / p99 | /logs p95 | events/s offered / stored | errors (ramp) "
        "| fleet CPU | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cmd = r.get("command_ms") or r.get("old_command_ms") or {}
        lat = " / ".join(f"{cmd.get(k, 0):,.0f}" for k in ("p50", "p95", "p99")) + " ms"
        errors = sum((r.get("errors") or {}).values())
        logs = (r.get("logs_ms") or {}).get("p95")
        logs_p95 = "–" if logs is None else f"{logs:,.0f} ms"
        events = (
            f"{r.get('offered_events_s', 0):,} / {r.get('stored_events_s', 0):,}"
            if r.get("senders")
            else "–"
        )
        print(
            f"| {Path(r['code']).name} | {r['n']:,} | {r.get('connected', 0):,} "
            f"({r.get('ramp_s')} s) | {r.get('manager_cpu')} % | {r.get('manager_rss_mb')} MB "
            f"| {r.get('bytes_per_conn', 0) / 1024:,.0f} KiB | {lat} | {logs_p95} | {events} "
            f"| {errors} "
            f"({sum((r.get('ramp_errors') or {}).values())}) | {r.get('fleet_cpu')} % "
            f"| {r['load']:.1f} |",
            flush=True,
        )
