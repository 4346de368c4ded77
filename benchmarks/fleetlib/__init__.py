"""benchmarks/fleet.py's parts: the manager and its data, the simulated agents' connections,
the agents, the ramp's pacer, the fleet process and the printed report."""
