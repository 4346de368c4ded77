"""Child process of the crash test: appends batches forever, printing each acknowledgement.

Usage: ``python -m tests.index.crash_child ROOT [START] [process] [threads=N]``. Each line
``ACK <batch> <first> <count>`` is printed only after ``append`` returned (the batch is
durable); the parent kills us with SIGKILL at an arbitrary moment. With ``process`` the index
is written by a writer child process, whose pid is printed first as ``WRITER <pid>``. With
``threads=N``, N threads append at once (their batches share journal fsyncs: group commit).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from index import EndpointRef, EventStore
from tests.support.events import gene_event

BATCH = 40


def event(batch: int, i: int) -> dict[str, object]:
    """A Sysmon-like event carrying a unique marker."""
    data = {
        "Image": "C:\\Windows\\System32\\cmd.exe",
        "CommandLine": f"cmd /c marker b{batch}e{i}",
        "Marker": f"b{batch}e{i}",
    }
    when = f"2024-05-01T00:{batch % 60:02d}:{i % 60:02d}.000000Z"
    return gene_event(1, data, computer="WS-CRASH", time=when)


def main() -> None:
    root = Path(sys.argv[1])
    start = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    options = sys.argv[3:]
    process = "process" in options
    threads = next((int(o.split("=", 1)[1]) for o in options if o.startswith("threads=")), 1)
    store = EventStore(root, commit_interval=0.2, index_process=process)
    if process:
        print(f"WRITER {store.stats()['writer_pid']}", flush=True)
    endpoint = EndpointRef("crash-endpoint", "WS-CRASH")
    out = threading.Lock()

    def append_forever(batch: int) -> None:
        while True:
            result = store.append(
                [event(batch, i) for i in range(BATCH)],
                endpoint=endpoint,
                batch_id=f"batch-{batch}",
            )
            with out:  # whole lines: print() writes the text and the newline apart
                sys.stdout.write(f"ACK {batch} {result.first_seq} {result.count}\n")
                sys.stdout.flush()
            batch += threads

    for n in range(1, threads):
        threading.Thread(target=append_forever, args=(start + n,), daemon=True).start()
    append_forever(start)


if __name__ == "__main__":
    main()
