"""pyproxy: an asyncio Redis sharding proxy with ZooKeeper-driven failover.

The example configuration files ship inside the package, in ``examples/`` (links to the
repository's ``conf/`` files, copied into the wheel): ``example_config(name)`` reads one, so
``pyproxy --example-config`` and ``pyproxy-watchdog --example-config`` work wherever the
package is installed.
"""

from importlib import resources

__version__ = "0.1.0"

# the shipped examples: every pool key documented, the seed's icd.yml, the seed's watchdog conf
EXAMPLES = ("example.yml", "icd.yml", "zoo-watchdog.conf")


def example_config(name: str) -> str:
    """The text of one of ``EXAMPLES``."""
    if name not in EXAMPLES:
        raise ValueError(f"no example named {name!r} (there are {', '.join(EXAMPLES)})")
    return resources.files(__name__).joinpath("examples", name).read_text(encoding="utf-8")
