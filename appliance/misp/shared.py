"""MispSync over shared storage (cluster mode, pgstore.py): read what other front-ends changed.

Every front-end keeps in memory what it read of the shared state: settings and client, the IoC
index (what sightings match), the report ledger, attempts, dead letters. It reads again on two
occasions: a `NOTIFY heron_fleet, 'misp'` (a settings change, or a pull that changed the IoC set,
on any front-end), and becoming the leader of a job (the previous leader wrote the ledger and
attempts meanwhile). A job's leader is the only writer of that job's state: a notification
never overwrites what it holds in memory.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .service import MispSync

__all__ = ["leads_stream", "on_notify", "reload_job", "reload_settings"]

logger = logging.getLogger(__name__)


def reload_settings(sync: MispSync) -> bool:
    """Read the stored settings; a new client when they changed (True then)."""
    store = sync.storage.settings
    if store is None:
        return False
    settings = store.load(None)
    with sync._lock:
        old = sync.client
        if settings == old.settings:
            return False
        sync._build(settings)
        sync._pull_next = 0.0
    old.close()
    logger.info("MISP settings reloaded (enabled=%s, url=%s)", settings.enabled, settings.url)
    return True


def reload_job(sync: MispSync, job: str) -> None:
    """Read the state documents `job` writes (service.JOB_PULL: the IoC set; JOB_REPORTS: the
    queues' attempts and the report ledger)."""
    from .service import JOB_PULL

    if job == JOB_PULL:
        sync.iocs.reload()
    else:
        sync.sightings.reload()
        sync.reports.reload()
    sync.dead.reload()


def on_notify(sync: MispSync) -> None:
    """Another front-end (or this one) changed the MISP settings or state."""
    from .service import LEADER_JOBS

    reload_settings(sync)
    for job in LEADER_JOBS:
        if not sync.leads(job):
            reload_job(sync, job)


def leads_stream(sync: MispSync, job: str) -> bool:
    """Whether this front-end leads `job`; its state is read again when it just became leader."""
    led = sync._led
    if not sync.leads(job):
        led.discard(job)
        return False
    if job not in led:
        led.add(job)
        logger.info("MISP: this front-end now runs %s; reading the shared state", job)
        reload_job(sync, job)
    return True
