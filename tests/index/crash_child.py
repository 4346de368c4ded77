"""Child process of the crash test: appends batches forever, printing each acknowledgement.

Usage: ``python -m tests.index.crash_child ROOT [START] [process]``. Each line
``ACK <batch> <first> <count>`` is printed only after ``append`` returned (the batch is
durable); the parent kills us with SIGKILL at an arbitrary moment. With ``process`` the index
is written by a writer child process, whose pid is printed first as ``WRITER <pid>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from index import EndpointRef, EventStore

BATCH = 40


def event(batch: int, i: int) -> dict[str, object]:
    """A Sysmon-like event carrying a unique marker."""
    return {
        "Event": {
            "System": {
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Computer": "WS-CRASH",
                "EventID": 1,
                "TimeCreated": {
                    "SystemTime": f"2024-05-01T00:{batch % 60:02d}:{i % 60:02d}.000000Z"
                },
            },
            "EventData": {
                "Image": "C:\\Windows\\System32\\cmd.exe",
                "CommandLine": f"cmd /c marker b{batch}e{i}",
                "Marker": f"b{batch}e{i}",
            },
        }
    }


def main() -> None:
    root = Path(sys.argv[1])
    start = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    process = sys.argv[3:] == ["process"]
    store = EventStore(root, commit_interval=0.2, index_process=process)
    if process:
        print(f"WRITER {store.stats()['writer_pid']}", flush=True)
    endpoint = EndpointRef("crash-endpoint", "WS-CRASH")
    batch = start
    while True:
        result = store.append(
            [event(batch, i) for i in range(BATCH)], endpoint=endpoint, batch_id=f"batch-{batch}"
        )
        print(f"ACK {batch} {result.first_seq} {result.count}", flush=True)
        batch += 1


if __name__ == "__main__":
    main()
