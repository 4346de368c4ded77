"""Linux sensor on eBPF (CO-RE): heron.bpf.c compiled at build time, loaded through libbpf.

``sensor`` loads the object (or says why it cannot), ``source`` turns its ring-buffer records
into events, ``records`` and ``dns`` decode them (pure).
"""
