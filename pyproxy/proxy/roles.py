"""What each redis says it is: ``ROLE``, asked on the event loop for the status page.

``probe(addresses, password, timeout)`` opens one short connection to every address at once
(``AUTH`` first when the pool has ``redis_auth``), asks ``ROLE``, closes, and returns what
each said — or why it said nothing — within ``timeout`` seconds in all. Nothing here is on
the request path: the status page asks, at most once per ``ROLE_TTL`` (``pyproxy.status``).

Never blocks the loop: asyncio streams, every wait bounded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import hiredis

from .. import address
from ..protocol.resp import encode_command


@dataclass(frozen=True, slots=True)
class Role:
    role: str  # "master", "slave", ... as ROLE says; "" when it did not answer
    follows: str = ""  # a replica's master, host:port
    link: str = ""  # a replica's link state: "connected", "connect", "sync", ...
    offset: int = 0  # replication offset
    replicas: tuple[str, ...] = ()  # a master's replicas as it lists them
    error: str = ""  # why there is no answer


def parse(reply: Any) -> Role:
    """A ROLE reply (hiredis's decoding) -> ``Role``."""
    try:
        kind = reply[0].decode()
        if kind == "master":
            replicas = tuple(f"{r[0].decode()}:{int(r[1])}" for r in reply[2])
            return Role(kind, offset=int(reply[1]), replicas=replicas)
        if kind == "slave":
            return Role(kind, follows=f"{reply[1].decode()}:{int(reply[2])}",
                        link=reply[3].decode(), offset=int(reply[4]))
        return Role(kind)
    except (TypeError, IndexError, ValueError, AttributeError):
        return Role("", error=f"unexpected ROLE reply {str(reply)[:60]}")


async def _ask(where: str, password: str | None) -> Role:
    host, port = address.parse(where)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        commands = ([encode_command([b"AUTH", password.encode()])] if password else [])
        writer.write(b"".join([*commands, encode_command([b"ROLE"])]))
        parser = hiredis.Reader(replyError=RuntimeError)
        replies: list[Any] = []
        while len(replies) < len(commands) + 1:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed the connection")
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, RuntimeError):
                    raise reply
                replies.append(reply)
        return parse(replies[-1])
    finally:
        writer.close()


async def probe(addresses: list[str], password: str | None,
                timeout: float) -> dict[str, Role]:
    async def one(where: str) -> Role:
        try:
            return await asyncio.wait_for(_ask(where, password), timeout)
        except TimeoutError:
            return Role("", error=f"no answer within {timeout:g} s")
        except Exception as exc:  # whatever a member answers (HTTP, garbage, an odd ROLE),
            # it is that member's error on the page, never the page's failure
            return Role("", error=str(exc) or type(exc).__name__)

    answers = await asyncio.gather(*(one(where) for where in addresses))
    return dict(zip(addresses, answers, strict=True))
