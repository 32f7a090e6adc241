"""Where a key lives: hashing (key -> hash), distribution (hash -> shard, as nutcracker places
keys), tables (slot ranges -> shard -> master) and the immutable routes snapshot the request
path reads. Pure: imports nothing else of pyproxy but ``address``; no I/O.
"""
