"""pyproxy: an asyncio Redis sharding proxy with ZooKeeper-driven failover."""

__version__ = "0.1.0"
