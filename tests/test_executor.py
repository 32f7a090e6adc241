"""The executor and the session with fakes (tests/fakes.py): what each kind of command sends to
which shard, the exact bytes the client gets back, and modes — no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from pyproxy.protocol.commands import COMMANDS, Command
from pyproxy.protocol.resp import encode_command
from pyproxy.proxy.replies import Reply
from pyproxy.proxy.session import Mode, Session
from tests.fakes import FakeClient, FakePool, executor_for
from tests.keys import keys_for_shard

A1, A2 = (k.encode() for k in keys_for_shard(0, 2))
B1, B2 = (k.encode() for k in keys_for_shard(1, 2))


def setup(**keys: Any) -> tuple[FakePool, FakeClient, Any]:
    pool = FakePool(**keys)
    client = FakeClient(pool)
    return pool, client, executor_for(pool)


def test_single_key_command_goes_whole_to_its_shard_and_back_unchanged() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"SET", B1, b"v"])
    ex.run(client, [b"GET", A1])
    a, b = pool.endpoints
    assert [p for p, _ in a.sent] == [encode_command([b"GET", A1])]
    assert [p for p, _ in b.sent] == [encode_command([b"SET", B1, b"v"])]
    a.answer(b"$1\r\nv\r\n")  # the second request answers first
    assert client.replies() == []  # order: the SET's reply is still owed
    b.answer(b"+OK\r\n")
    assert client.replies() == [b"+OK\r\n", b"$1\r\nv\r\n"]
    get, set_ = COMMANDS["get"].index, COMMANDS["set"].index
    assert (pool.stats.commands[get], pool.stats.commands[set_]) == (1, 1)


def test_unknown_command_and_wrong_arity_get_redis_texts_and_reach_no_shard() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"NOSUCH", b"a", b"b"])
    ex.run(client, [b"GET"])
    ex.run(client, [b"MSET", A1, b"v", B1])  # a key without its value
    assert client.replies() == [
        b"-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n",
        b"-ERR wrong number of arguments for 'get' command\r\n",
        b"-ERR wrong number of arguments for 'mset' command\r\n",
    ]
    assert not any(e.sent for e in pool.endpoints)
    assert pool.stats.unknown == 1


def test_noauth_before_auth_then_served() -> None:
    pool, client, ex = setup(redis_auth="secret")
    ex.run(client, [b"GET", A1])
    ex.run(client, [b"AUTH", b"wrong"])
    ex.run(client, [b"AUTH", b"secret"])
    ex.run(client, [b"GET", A1])
    pool.endpoints[0].answer(b"$-1\r\n")
    assert client.replies() == [
        b"-NOAUTH Authentication required.\r\n",
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        b"+OK\r\n",
        b"$-1\r\n",
    ]
    assert len(pool.endpoints[0].sent) == 0 and client.session.authenticated


def test_the_password_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15, finding 12: ``==`` on bytes returns at the first differing byte, so its time
    tells how much of a guess was right; every AUTH goes through hmac.compare_digest."""
    import hmac

    from pyproxy.proxy import local

    compared: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(given: bytes, password: bytes) -> bool:
        compared.append((given, password))
        return compare(given, password)

    monkeypatch.setattr(local.hmac, "compare_digest", spy)
    pool, client, ex = setup(redis_auth="secret")
    guesses = [b"s", b"secre", b"secretX", b"Secret", b"secret"]
    for guess in guesses:
        ex.run(client, [b"AUTH", guess])
    assert compared == [(guess, b"secret") for guess in guesses]
    wrong = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    assert client.replies() == [wrong] * 4 + [b"+OK\r\n"]


def test_same_shard_keys_forwarded_whole_cross_shard_refused() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"RENAME", A1, A2])
    ex.run(client, [b"RENAME", A1, B1])
    ex.run(client, [b"EVAL", b"return 1", b"0"])  # a script without keys: the first shard
    assert [p for p, _ in pool.endpoints[0].sent] == [
        encode_command([b"RENAME", A1, A2]), encode_command([b"EVAL", b"return 1", b"0"])]
    assert not pool.endpoints[1].sent
    pool.endpoints[0].answer(b"+OK\r\n", b":1\r\n")
    assert client.replies() == [
        b"+OK\r\n",
        b"-ERR pyproxy: the keys of 'RENAME' live on different shards (use a hash tag to keep "
        b"them together)\r\n",
        b":1\r\n",
    ]


def test_split_mget_one_part_per_shard_merged_in_key_order() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"MGET", B1, A1, B2, A2])
    a, b = pool.endpoints
    assert [p for p, _ in a.sent] == [encode_command([b"MGET", A1, A2])]
    assert [p for p, _ in b.sent] == [encode_command([b"MGET", B1, B2])]
    b.answer(b"*2\r\n$2\r\nb1\r\n$-1\r\n")
    assert client.replies() == []
    a.answer(b"*2\r\n$2\r\na1\r\n$2\r\na2\r\n")
    assert client.replies() == [b"*4\r\n$2\r\nb1\r\n$2\r\na1\r\n$-1\r\n$2\r\na2\r\n"]
    assert pool.stats.fragments == 2


def test_split_with_every_key_on_one_shard_gets_that_shards_own_reply() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"DEL", B1, B2])
    assert [p for p, _ in pool.endpoints[1].sent] == [encode_command([b"DEL", B1, B2])]
    pool.endpoints[1].answer(b":2\r\n")
    assert client.replies() == [b":2\r\n"]
    assert pool.stats.fragments == 0


def test_split_error_of_one_shard_is_the_reply() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"MSET", A1, b"1", B1, b"2"])
    error = b"-ERR pyproxy: backend 127.0.0.1:2 is down (connect failed)\r\n"
    pool.endpoints[1].answer(error)
    pool.endpoints[0].answer(b"+OK\r\n")
    assert client.replies() == [error]


def test_refused_command_reaches_no_shard() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"SHUTDOWN"])
    (reply,) = client.replies()
    assert reply.startswith(b"-ERR pyproxy: 'SHUTDOWN' is not supported: ")
    assert not any(e.sent for e in pool.endpoints) and pool.stats.refused == 1


def test_local_commands_see_the_session() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"CLIENT", b"SETNAME", b"worker-1"])
    ex.run(client, [b"CLIENT", b"GETNAME"])
    ex.run(client, [b"CLIENT", b"ID"])
    ex.run(client, [b"HELLO", b"3"])
    ex.run(client, [b"CLIENT", b"GETNAME"])
    ex.run(client, [b"QUIT"])
    replies = client.replies()
    assert replies[:3] == [b"+OK\r\n", b"$8\r\nworker-1\r\n", b":7\r\n"]
    assert replies[3].startswith(b"%7\r\n")  # HELLO 3 answers a RESP3 map
    assert replies[4:] == [b"$8\r\nworker-1\r\n", b"+OK\r\n"]
    assert client.session.resp3 and client.session.closing


class Swallowing(Mode):
    """A mode that answers every GET itself and lets everything else through."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.ended = False

    def intercept(self, command: Command, args: list[bytes], reply: Reply) -> bool:
        self.seen.append(args[0])
        if command.name == "get":
            reply.settle(b"+INTERCEPTED\r\n")
            return True
        return False

    def end(self) -> None:
        self.ended = True


def test_a_mode_sees_commands_first_and_may_leave_them_to_dispatch() -> None:
    pool, client, ex = setup()
    mode = client.session.mode = Swallowing()
    ex.run(client, [b"GET", A1])
    ex.run(client, [b"SET", A1, b"v"])
    ex.run(client, [b"NOSUCH"])  # unknown commands never reach a mode
    assert mode.seen == [b"GET", b"SET"]
    assert [p for p, _ in pool.endpoints[0].sent] == [encode_command([b"SET", A1, b"v"])]
    pool.endpoints[0].answer(b"+OK\r\n")
    assert client.replies()[:2] == [b"+INTERCEPTED\r\n", b"+OK\r\n"]
    client.session.end()
    assert mode.ended and client.session.mode is None


@pytest.mark.parametrize("authenticated", [True, False])
def test_session_end_without_a_mode_is_harmless(authenticated: bool) -> None:
    session = Session(1, "peer", authenticated)
    session.end()
    assert session.mode is None and session.authenticated is authenticated


def test_a_transaction_sends_nothing_before_exec_then_one_block() -> None:
    pool, client, ex = setup()
    for args in ([b"MULTI"], [b"SET", A1, b"1"], [b"GET", A2], [b"PING"]):
        ex.run(client, args)
    assert not any(e.sent for e in pool.endpoints)
    assert client.replies() == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n"]
    ex.run(client, [b"EXEC"])
    a = pool.endpoints[0]
    assert [p for p, _ in a.sent] == [encode_command(c) for c in (
        [b"MULTI"], [b"SET", A1, b"1"], [b"GET", A2], [b"PING"], [b"EXEC"])]
    exec_reply = b"*3\r\n+OK\r\n$1\r\n1\r\n+PONG\r\n"
    a.answer(b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n", exec_reply)
    assert client.replies()[-1] == exec_reply and client.session.mode is None


@pytest.mark.parametrize("bad", [[b"SET", B1, b"x"], [b"NOSUCH"], [b"GET"], [b"KEYS", b"*"],
                                 [b"SHUTDOWN"], [b"MGET", A1, B1]])
def test_a_failed_check_aborts_the_transaction_with_nothing_sent(bad: list[bytes]) -> None:
    pool, client, ex = setup()
    for args in ([b"MULTI"], [b"SET", A1, b"1"], bad, [b"MULTI"], [b"SET", A2, b"2"],
                 [b"EXEC"]):
        ex.run(client, args)
    replies = client.replies()
    assert replies[:2] == [b"+OK\r\n", b"+QUEUED\r\n"] and replies[2].startswith(b"-ERR ")
    assert replies[3:] == [b"-ERR MULTI calls can not be nested\r\n", b"+QUEUED\r\n",
                           b"-EXECABORT Transaction discarded because of previous errors.\r\n"]
    assert not any(e.sent for e in pool.endpoints) and client.session.mode is None


# ---------------------------------------------------------------- blocking calls


def test_a_blocking_call_waits_on_a_pin_and_holds_back_the_pipeline() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"BLPOP", A1, b"0"])
    ex.run(client, [b"GET", A2])  # held back until the BLPOP answers
    (pin,) = pool.endpoints[0].pins
    assert [p for p, _ in pin.sent] == [encode_command([b"BLPOP", A1, b"0"])]
    assert not pool.endpoints[0].sent and client.session.mode is not None
    pin.sent[0][1].settle(b"*2\r\n$2\r\nk0\r\n$1\r\nv\r\n")
    assert pin.released and client.session.mode is None
    assert [p for p, _ in pool.endpoints[0].sent] == [encode_command([b"GET", A2])]


def test_unblocked_by_a_role_change_is_reissued_with_the_time_left() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"BRPOP", A1, b"30"])
    first = pool.endpoints[0].pins[0]
    first.sent[0][1].settle(b"-UNBLOCKED force unblock from blocking operation, instance "
                            b"state changed (master -> replica?)\r\n")
    second = pool.endpoints[0].pins[1]
    (payload, _), = second.sent
    seconds = float(payload.rsplit(b"\r\n", 2)[1])
    assert first.released and 29 < seconds <= 30
    assert client.replies() == []  # still waiting for the element


def test_a_broken_connection_while_blocked_is_an_unknown_outcome() -> None:
    from pyproxy.proxy.errors import Failure

    pool, client, ex = setup()
    ex.run(client, [b"BLMOVE", A1, A2, b"LEFT", b"LEFT", b"0"])
    pin = pool.endpoints[0].pins[0]
    pin.sent[0][1].settle(Failure("ERR pyproxy: backend x failed: connection lost", "lost",
                                  sent=True))
    (reply,) = client.replies()
    assert b"may or may not have taken an element (not retried)" in reply
    assert len(pool.endpoints[0].pins) == 1  # not re-issued


def test_a_client_gone_while_blocked_releases_its_pin() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"BZPOPMIN", A1, b"0"])
    pin = pool.endpoints[0].pins[0]
    client.session.end()
    assert pin.released and client.session.mode is None


def test_client_unblock_by_an_operator_reaches_the_client() -> None:
    pool, client, ex = setup()
    ex.run(client, [b"BLPOP", A1, b"0"])
    pool.endpoints[0].pins[0].sent[0][1].settle(b"-UNBLOCKED client unblocked via CLIENT "
                                                b"UNBLOCK\r\n")
    assert client.replies() == [b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"]
    assert len(pool.endpoints[0].pins) == 1
