"""What every layer of the manager shares: the error tree, configuration, time formats, metrics.

Imports nothing from the other subpackages except `misp.settings` (the `[misp]` config section).
"""
