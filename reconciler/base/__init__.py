"""Base: what every other layer may use, and which imports nothing of Grove's.

The one exception tree (`errors`), diagnostics and their rule-code catalog
(`diagnostics`), settings from the environment (`settings`), logging and metrics
(`logs`, `telemetry`), request ids (`ids`) and the allow-listed environment of
child processes (`childenv`). No I/O beyond reading the environment.
"""
