"""Linux sensor on eBPF (CO-RE): heron.bpf.c compiled at build time, loaded through libbpf.

``sensor`` loads the object (or says why it cannot), ``source`` keeps the process table and
turns its ring-buffer records into events, ``events`` builds each event's fields (pure),
``records`` and ``dns`` decode them (pure).
"""
