"""``python -m pyproxy.watchdog``: the same as ``pyproxy-watchdog``."""

from .cli import main

raise SystemExit(main())
