"""RESP framing and the command table. Pure: imports nothing else of pyproxy; no I/O."""
