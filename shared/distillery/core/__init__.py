"""The core every part builds on: typed models and events, settings, errors, ports, jobs, runtime.

Deployed with the functions. Nothing here imports a Google client at import time: the adapters
(:mod:`distillery.adapters`) are built lazily by :mod:`distillery.core.runtime`.
"""
