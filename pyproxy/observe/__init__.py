"""Observing the proxy: plain-int counters the hot path bumps (``stats``), read-only snapshots
(``snapshot``), and the exporters that read only snapshots — Prometheus (``metrics``) and the
nutcracker-style stats port (``statsport``). Imports ``protocol`` and ``routing`` only.
"""
