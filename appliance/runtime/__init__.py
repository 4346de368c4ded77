"""The running manager: the context every part shares, cluster wiring, Windows service host,
structured logs, the local admin channel and the `make run` launcher."""
