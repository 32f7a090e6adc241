"""pyproxy.config: the seed file, slot tables, and every error as its exact one-line message."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from pyproxy import config
from pyproxy.config import ConfigError, ServerSpec

CONF = Path(__file__).resolve().parent.parent / "conf"

# A valid pool as raw YAML scalars, so tests can write values exactly as a user would.
BASE = {
    "listen": "127.0.0.1:22121",
    "hash": "md5",
    "distribution": "modula",
    "redis": "true",
    "servers": "[127.0.0.1:6379:0-2047, 127.0.0.1:6380:2048-4095]",
}
ZK = {
    "zookeeper_host": "127.0.0.1:2181",
    "zookeeper_path": "/redis/proxy/t/127.0.0.1:22121",
    "zookeeper_redis_path": "/redis/cluster/t",
}
PREFIX = "t.yml: pool 'alpha': "


def pool_yaml(name: str = "alpha", /, **values: str | None) -> str:
    """One pool: BASE with `values` written over it; a None value leaves the key out."""
    settings = {key: value for key, value in {**BASE, **values}.items() if value is not None}
    return f"{name}:\n" + "".join(f"  {key}: {value}\n" for key, value in settings.items())


def parse_pool(**values: str | None) -> config.PoolConfig:
    (pool,) = config.parse(pool_yaml(**values), "t.yml").pools
    return pool


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.parse(text, "t.yml")
    assert str(caught.value) == "\n".join(caught.value.errors)
    assert all("\n" not in line for line in caught.value.errors)
    return caught.value.errors


def slots(pool: config.PoolConfig) -> list[tuple[str, int, int]]:
    return [(server.name, server.start, server.end) for server in pool.servers]


# --- files --------------------------------------------------------------------------------------

def test_seed_file_loads_unchanged() -> None:
    path = str(CONF / "icd.yml")
    loaded = config.load(path)
    assert loaded.path == path
    assert loaded.digest == config.settings_digest(loaded.pools)
    (pool,) = loaded.pools
    assert (pool.name, pool.listen_host, pool.listen_port) == ("alpha", "172.17.32.105", 22121)
    assert (pool.timeout_ms, pool.server_retry_timeout_ms, pool.server_failure_limit) == (
        1000, 2000, 2)
    assert pool.auto_eject_hosts is False and pool.hash_tag is None
    assert pool.uses_zookeeper
    assert pool.zookeeper_host == "172.16.10.163:2181,172.16.10.96:2181"
    assert pool.zookeeper_path == "/redis/proxy/icd/172.17.32.105:22121"
    assert pool.zookeeper_redis_path == "/redis/cluster/icd"
    assert pool.modulus == config.SLOTS == 4096
    assert pool.servers == (
        ServerSpec("172.17.32.105", 6379, "172.17.32.105:6379", 0, 2047, None),
        ServerSpec("172.17.32.106", 6379, "172.17.32.106:6379", 2048, 4095, None),
    )
    assert pool.servers[1].address == "172.17.32.106:6379"


def test_example_file_loads_with_every_pyproxy_addition() -> None:
    (pool,) = config.load(str(CONF / "example.yml")).pools
    assert (pool.listen_host, pool.listen_port, pool.hash_tag) == ("127.0.0.1", 22121, b"{}")
    assert slots(pool) == [("127.0.0.1:6379", 0, 2047), ("127.0.0.1:6380", 2048, 4095)]
    assert not pool.uses_zookeeper
    text = (CONF / "example.yml").read_text()
    for key in config._KEYS:
        assert f"  {key}:" in text or f"  # {key}:" in text, key


def test_defaults() -> None:
    pool = parse_pool()
    assert (pool.timeout_ms, pool.backlog, pool.preconnect, pool.redis_auth, pool.redis_db) == (
        None, 512, False, None, 0)
    assert (pool.client_connections, pool.tcpkeepalive, pool.reuseport) == (0, False, False)
    assert (pool.server_connections, pool.auto_eject_hosts, pool.server_retry_timeout_ms,
            pool.server_failure_limit) == (1, False, 30000, 2)
    assert (pool.zookeeper_host, pool.zookeeper_path, pool.zookeeper_redis_path) == (
        None, None, None)
    assert not pool.uses_zookeeper and pool.zookeeper_session_timeout_ms == 10000
    assert (pool.max_bulk_length, pool.max_multibulk_length, pool.client_idle_timeout_ms) == (
        536870912, 1048576, None)


def test_slowlog_keys() -> None:
    pool = parse_pool()
    assert (pool.slowlog_log_slower_than, pool.slowlog_max_len) == (10000, 128)
    pool = parse_pool(slowlog_log_slower_than="-1", slowlog_max_len="0")
    assert (pool.slowlog_log_slower_than, pool.slowlog_max_len) == (-1, 0)
    assert parse_pool(slowlog_log_slower_than="0").slowlog_log_slower_than == 0
    assert errors_of(pool_yaml(slowlog_log_slower_than="fast", slowlog_max_len="-5",
                               timeout="x")) == [
        PREFIX + "timeout: expected an integer >= 0 (milliseconds), got 'x'",
        PREFIX + "slowlog_log_slower_than: expected an integer (microseconds; negative = log "
                 "nothing, 0 = log every request), got 'fast'",
        PREFIX + "slowlog_max_len: expected an integer >= 0 (entries), got -5",
    ]


def test_nutcrackers_defaults_place_keys_with_fnv1a_64_and_ketama() -> None:
    pool = parse_pool(hash=None, distribution=None, servers="[h:1:1, h:2:1]")
    assert (pool.hash, pool.distribution) == (config.DEFAULT_HASH, config.DEFAULT_DISTRIBUTION)
    assert (pool.hash, pool.distribution) == ("fnv1a_64", "ketama")


@pytest.mark.parametrize("hash_name", config.HASHES)
@pytest.mark.parametrize("distribution", config.DISTRIBUTIONS)
def test_every_hash_and_distribution_loads(hash_name: str, distribution: str) -> None:
    pool = parse_pool(hash=hash_name, distribution=distribution, servers="[h:1:3, h:2:1 b]")
    assert (pool.hash, pool.distribution) == (hash_name, distribution)
    assert slots(pool) == [("b", 0, 0), ("h:1", 1, 3)]  # nutcracker's order, as weights


def test_slot_ranges_with_another_hash_keep_modula() -> None:
    pool = parse_pool(hash="crc32a")
    assert (pool.hash, pool.distribution, pool.modulus) == ("crc32a", "modula", 4096)


def test_values_nutcracker_accepts_that_mean_none() -> None:
    pool = parse_pool(timeout="0", backlog="0", server_retry_timeout="0",
                      server_failure_limit="0", client_connections="0")
    assert (pool.timeout_ms, pool.backlog, pool.server_retry_timeout_ms,
            pool.server_failure_limit, pool.client_connections) == (None, 0, 0, 0, 0)


def test_every_key_set() -> None:
    pool = parse_pool(timeout="250", backlog="1024", preconnect="true", redis_auth="s3cret",
                      redis_db="3", server_connections="2", auto_eject_hosts="true",
                      server_retry_timeout="500", server_failure_limit="5",
                      zookeeper_session_timeout="4000", max_bulk_length="1024",
                      max_multibulk_length="64", client_idle_timeout="60000",
                      client_connections="100", tcpkeepalive="true", reuseport="true", **ZK)
    assert (pool.timeout_ms, pool.backlog, pool.preconnect, pool.redis_auth, pool.redis_db) == (
        250, 1024, True, "s3cret", 3)
    assert (pool.server_connections, pool.auto_eject_hosts, pool.server_retry_timeout_ms,
            pool.server_failure_limit) == (2, True, 500, 5)
    assert pool.uses_zookeeper and pool.zookeeper_session_timeout_ms == 4000
    assert (pool.max_bulk_length, pool.max_multibulk_length, pool.client_idle_timeout_ms) == (
        1024, 64, 60000)
    assert (pool.client_connections, pool.tcpkeepalive, pool.reuseport) == (100, True, True)


def test_config_is_frozen() -> None:
    pool = parse_pool()
    with pytest.raises(dataclasses.FrozenInstanceError):
        pool.timeout_ms = 5  # type: ignore[misc]


def test_the_digest_follows_the_settings_but_not_the_secrets() -> None:
    """Proxies publish it in ZooKeeper: it must tell settings apart, and give away nothing
    of a password (a hash of the file would be guessed offline)."""
    plain = config.parse(pool_yaml())
    assert plain.path == "<string>" and len(plain.digest) == 64
    assert config.parse(pool_yaml(timeout="250")).digest != plain.digest
    secret = config.parse(pool_yaml(redis_auth="s3cret", zookeeper_auth=None))
    other = config.parse(pool_yaml(redis_auth="hunter2"))
    assert secret.digest == other.digest
    for candidate in ("s3cret", "hunter2"):
        assert hashlib.sha256(candidate.encode()).hexdigest() != secret.digest


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yml")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert caught.value.errors == [f"{path}: cannot read: No such file or directory"]


def test_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_bytes(b"alpha:\n  listen: \xff\n")
    with pytest.raises(ConfigError) as caught:
        config.load(str(path))
    assert caught.value.errors == [f"{path}: not UTF-8 (bad byte at offset 17)"]


@pytest.mark.parametrize(("text", "expected"), [
    ("alpha: [1\n", "t.yml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ("alpha:\n  a: 1\n\tb: 2\n",
     "t.yml:3:1: invalid YAML: found character '\\t' that cannot start any token"),
    ("alpha:\n  listen: a\n  listen: b\n", "t.yml:3:3: duplicate key 'listen'"),
    ("", "t.yml: expected a mapping of pool names to pool settings, got an empty file"),
    ("- 1\n", "t.yml: expected a mapping of pool names to pool settings, got a list"),
    ("alpha: 1\n", "t.yml: pool 'alpha': expected a mapping of settings, got 1"),
    ("alpha: {}\n", "t.yml: pool 'alpha': expected a mapping of settings, got an empty mapping"),
    ("1: {a: 1}\n", "t.yml: pool name 1: expected a non-empty string"),
])
def test_file_shape_errors(text: str, expected: str) -> None:
    assert errors_of(text) == [expected]


# --- slot tables --------------------------------------------------------------------------------

def test_ranges_are_put_in_slot_order() -> None:
    pool = parse_pool(servers="[h2:1:1000-4095 b, h1:1:0-999 a]")
    assert slots(pool) == [("a", 0, 999), ("b", 1000, 4095)]
    assert pool.modulus == 4096 and pool.servers[0].weight is None


def test_single_range_and_many_ranges_tile() -> None:
    assert slots(parse_pool(servers="[h:1:0-4095]")) == [("h:1", 0, 4095)]
    many = "[" + ", ".join(f"h:{i + 1}:{i * 256}-{i * 256 + 255}" for i in range(16)) + "]"
    assert [s.start for s in parse_pool(servers=many).servers] == list(range(0, 4096, 256))


@pytest.mark.parametrize(("servers", "expected", "modulus"), [
    # nutcracker sorts by name, shorter first, then bytewise: not the list order.
    ("[127.0.0.1:10001:1, 127.0.0.1:7301:1, 127.0.0.1:7201:1]",
     [("127.0.0.1:7201", 0, 0), ("127.0.0.1:7301", 1, 1), ("127.0.0.1:10001", 2, 2)], 3),
    ("[127.0.0.1:7301:2048, 127.0.0.1:7201:2048]",
     [("127.0.0.1:7201", 0, 2047), ("127.0.0.1:7301", 2048, 4095)], 4096),
    ("[127.0.0.1:7201:1000, 127.0.0.1:7301:3000]",
     [("127.0.0.1:7201", 0, 999), ("127.0.0.1:7301", 1000, 3999)], 4000),
    # explicit names decide the order: 'ab' (2 bytes) < 'abc' < 'zeta'.
    ("[127.0.0.1:7201:1 zeta, 127.0.0.1:7301:3 ab, 127.0.0.1:10001:2 abc]",
     [("ab", 0, 2), ("abc", 3, 4), ("zeta", 5, 5)], 6),
    # nutcracker names an unnamed :11211 server by its host alone (measured), so it sorts first.
    ("[127.0.0.1:7201:1, 127.0.0.1:11211:1]",
     [("127.0.0.1", 0, 0), ("127.0.0.1:7201", 1, 1)], 2),
])
def test_classic_weights_follow_nutcracker_order(
        servers: str, expected: list[tuple[str, int, int]], modulus: int) -> None:
    pool = parse_pool(servers=servers)
    assert slots(pool) == expected
    assert pool.modulus == modulus
    assert [s.end - s.start + 1 for s in pool.servers] == [s.weight for s in pool.servers]


def test_ranges_from_weights() -> None:
    assert config.ranges_from_weights([("bb", 2), ("a", 1), ("ab", 3)]) == [
        ("a", 0, 0), ("ab", 1, 3), ("bb", 4, 5)]


def test_weights_totalling_4096_may_use_zookeeper() -> None:
    pool = parse_pool(servers="[h:1:2048, h:2:2048]", **ZK)
    assert pool.uses_zookeeper and pool.modulus == 4096


# --- fields -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "tag"), [('"{}"', b"{}"), ("'$$'", b"$$"), ('"<>"', b"<>")])
def test_hash_tag(raw: str, tag: bytes) -> None:
    assert parse_pool(hash_tag=raw).hash_tag == tag


@pytest.mark.parametrize(("listen", "expected"), [
    ("/tmp/pyproxy.sock 0666", (None, None, "/tmp/pyproxy.sock", 0o666)),
    ("/tmp/pyproxy.sock 600", (None, None, "/tmp/pyproxy.sock", 0o600)),
    ("/tmp/pyproxy.sock", (None, None, "/tmp/pyproxy.sock", None)),
    ("0.0.0.0:6000", ("0.0.0.0", 6000, None, None)),
    ("proxy-1.example.com:1", ("proxy-1.example.com", 1, None, None)),
])
def test_listen(listen: str, expected: tuple[object, ...]) -> None:
    pool = parse_pool(listen=f"'{listen}'")
    assert pool.listen == listen
    assert (pool.listen_host, pool.listen_port, pool.listen_path, pool.listen_mode) == expected


TWO_CHARS = 'expected exactly two characters, quoted, like "{}"'
POSITIVE_MS = "expected a positive integer (milliseconds)"
MS = "expected an integer >= 0 (milliseconds)"
AT_LEAST_0 = "expected an integer >= 0"
ZK_PLACEMENT = ("ZooKeeper's shards are md5 slot ranges over 0-4095, so a ZooKeeper pool needs "
                "'hash: md5' and 'distribution: modula'")
RANGES_NEED_MODULA = ("places keys by weight, but the servers are slot ranges (a modula "
                      "continuum): write 'distribution: modula' or give host:port:weight entries")
ZK_TOGETHER = "missing (zookeeper_host, zookeeper_path and zookeeper_redis_path go together)"
ZNODE = ("expected an absolute znode path like /redis/cluster/icd (no trailing slash, no "
         "empty, '.' or '..' part, no whitespace)")
FORMS = "expected 'host:port:start-end [name]' or 'host:port:weight [name]'"


@pytest.mark.parametrize(("values", "expected"), [
    # unknown keys
    ({"timout": "5"}, "timout: unknown key (did you mean 'timeout'?)"),
    ({"color": "red"}, "color: unknown key"),
    ({'"a\\nb"': "1"}, "'a\\nb': unknown key"),
    # required keys, and those whose twemproxy defaults pyproxy cannot use here
    ({"distribution": None}, f"distribution: 'ketama' (nutcracker's default) {RANGES_NEED_MODULA}"),
    ({"distribution": "random"}, f"distribution: 'random' {RANGES_NEED_MODULA}"),
    ({**ZK, "hash": None}, f"hash: missing: {ZK_PLACEMENT}"),
    ({**ZK, "distribution": None}, f"distribution: missing: {ZK_PLACEMENT}"),
    ({"redis": None},
     "redis: missing: write 'redis: true' (twemproxy's default, false, means memcache)"),
    ({"listen": None}, "listen: missing (required), e.g. 127.0.0.1:22121"),
    ({"servers": None}, "servers: missing (required)"),
    # values pyproxy does not implement
    ({**ZK, "hash": "fnv1a_64"}, f"hash: 'fnv1a_64' cannot place keys here: {ZK_PLACEMENT}"),
    ({**ZK, "servers": "[h:1:2048, h:2:2048]", "distribution": "ketama"},
     f"distribution: 'ketama' cannot place keys here: {ZK_PLACEMENT}"),
    ({"hash": "sha1"}, "hash: expected one of one_at_a_time, md5, crc16, crc32, crc32a, fnv1_64, "
                       "fnv1a_64, fnv1_32, fnv1a_32, hsieh, murmur, jenkins, got 'sha1'"),
    ({"hash": "MD5"}, "hash: expected one of one_at_a_time, md5, crc16, crc32, crc32a, fnv1_64, "
                      "fnv1a_64, fnv1_32, fnv1a_32, hsieh, murmur, jenkins, got 'MD5'"),
    ({"distribution": "[ketama]"},
     "distribution: expected one of ketama, modula, random, got a list"),
    ({"servers": "['/tmp/redis.sock:1']"}, "servers: unix socket servers are not supported by "
                                           "pyproxy (connect to redis by host:port), got "
                                           "'/tmp/redis.sock:1'"),
    ({"redis": "false"},
     "redis: expected true, got false (pyproxy speaks Redis only, not memcache)"),
    # types: booleans are true/false only, integers are not booleans nor strings
    ({"timeout": "abc"}, f"timeout: {MS}, got 'abc'"),
    ({"timeout": "-5"}, f"timeout: {MS}, got -5"),
    ({"timeout": "'1000'"}, f"timeout: {MS}, got '1000'"),
    ({"timeout": "1.5"}, f"timeout: {MS}, got 1.5"),
    ({"timeout": "0666"}, f"timeout: {MS}, got '0666'"),
    ({"timeout": "1:20"}, f"timeout: {MS}, got '1:20'"),
    ({"timeout": ""}, f"timeout: {MS}, got null"),
    ({"server_retry_timeout": "true"}, f"server_retry_timeout: {MS}, got true"),
    ({"zookeeper_session_timeout": "0"}, f"zookeeper_session_timeout: {POSITIVE_MS}, got 0"),
    ({"client_idle_timeout": "[1]"}, f"client_idle_timeout: {POSITIVE_MS}, got a list"),
    ({"backlog": "true"}, f"backlog: {AT_LEAST_0}, got true"),
    ({"client_connections": "-1"}, f"client_connections: {AT_LEAST_0}, got -1"),
    ({"tcpkeepalive": "yes"}, "tcpkeepalive: expected true or false, got 'yes'"),
    ({"reuseport": "1"}, "reuseport: expected true or false, got 1"),
    ({"server_connections": "0"}, "server_connections: expected a positive integer, got 0"),
    ({"server_failure_limit": "x"}, f"server_failure_limit: {AT_LEAST_0}, got 'x'"),
    ({"max_multibulk_length": "0"}, "max_multibulk_length: expected a positive integer, got 0"),
    ({"max_bulk_length": "-1"}, "max_bulk_length: expected a positive integer (bytes), got -1"),
    ({"redis_db": "-1"}, "redis_db: expected an integer >= 0, got -1"),
    ({"redis_db": "false"}, "redis_db: expected an integer >= 0, got false"),
    ({"preconnect": "yes"}, "preconnect: expected true or false, got 'yes'"),
    ({"auto_eject_hosts": "True"}, "auto_eject_hosts: expected true or false, got 'True'"),
    ({"auto_eject_hosts": "1"}, "auto_eject_hosts: expected true or false, got 1"),
    ({"redis_auth": "12345"}, "redis_auth: expected a non-empty string (quote it if YAML reads "
                              "a number), got 12345"),
    # hash_tag
    ({"hash_tag": "{}"}, f"hash_tag: {TWO_CHARS}, got an empty mapping"),
    ({"hash_tag": "'{'"}, f"hash_tag: {TWO_CHARS}, got '{{'"),
    ({"hash_tag": "'{}}'"}, f"hash_tag: {TWO_CHARS}, got '{{}}}}'"),
    ({"hash_tag": "'éé'"}, f"hash_tag: {TWO_CHARS}, got 'éé'"),
    # listen
    ({"listen": "127.0.0.1:0"}, "listen: bad port '0' (expected 1..65535) in '127.0.0.1:0'"),
    ({"listen": "127.0.0.1:http"},
     "listen: bad port 'http' (expected 1..65535) in '127.0.0.1:http'"),
    ({"listen": "256.0.0.1:1"}, "listen: bad host '256.0.0.1' (expected an IPv4 address or a "
                                "hostname) in '256.0.0.1:1'"),
    ({"listen": "'bad host:1'"}, "listen: bad host 'bad host' (expected an IPv4 address or a "
                                 "hostname) in 'bad host:1'"),
    ({"listen": "22121"}, "listen: expected 'host:port' or '/path/to.sock [mode]', got 22121"),
    ({"listen": "localhost"}, "listen: expected 'host:port', got 'localhost'"),
    ({"listen": "/tmp/p.sock 0999"}, "listen: expected '/path/to.sock [mode]' with an octal "
                                     "mode like 0666, got '/tmp/p.sock 0999'"),
    # zookeeper
    ({"zookeeper_host": "127.0.0.1:2181"},
     f"zookeeper_path, zookeeper_redis_path: {ZK_TOGETHER}"),
    ({"zookeeper_host": "h:1", "zookeeper_path": "/p"}, f"zookeeper_redis_path: {ZK_TOGETHER}"),
    ({**ZK, "zookeeper_host": "'a:1, b'"},
     "zookeeper_host: bad item 'b' in 'a:1, b' (expected 'host:port')"),
    ({**ZK, "zookeeper_host": "a:1,b:0"},
     "zookeeper_host: bad item 'b:0' in 'a:1,b:0' (bad port '0' (expected 1..65535))"),
    ({**ZK, "zookeeper_path": "/redis/proxy/"}, f"zookeeper_path: {ZNODE}, got '/redis/proxy/'"),
    ({**ZK, "zookeeper_path": "redis/proxy"}, f"zookeeper_path: {ZNODE}, got 'redis/proxy'"),
    ({**ZK, "zookeeper_redis_path": "/"}, f"zookeeper_redis_path: {ZNODE}, got '/'"),
    ({**ZK, "zookeeper_redis_path": "/a//b"}, f"zookeeper_redis_path: {ZNODE}, got '/a//b'"),
    ({**ZK, "zookeeper_path": "/redis/cluster/t/me"},
     "zookeeper_path: '/redis/cluster/t/me' lies in zookeeper_redis_path '/redis/cluster/t', "
     "where it would be taken for a shard"),
    ({**ZK, "servers": "[h:1:1000, h:2:3000]"},
     "servers: weights total 4000, but ZooKeeper shards are slot ranges over 0-4095: make "
     "them total 4096 or use ranges"),
    # servers
    ({"servers": "[127.0.0.1:6379:0-2047, 127.0.0.1:6380:2000-4095]"},
     "servers: ranges 0-2047 and 2000-4095 overlap"),
    ({"servers": "[127.0.0.1:6379:0-2047, 127.0.0.1:6380:2100-4095]"},
     "servers: slots 2048-2099 are not covered"),
    ({"servers": "[h:1:1-4095]"}, "servers: slots 0-0 are not covered"),
    ({"servers": "[h:1:0-4094]"}, "servers: slots 4095-4095 are not covered"),
    ({"servers": "[h:1:0-4095, h:2:100-200]"}, "servers: ranges 0-4095 and 100-200 overlap"),
    ({"servers": "[h:1:0-4096]"}, "servers: bad slot range '0-4096' (expected start-end, "
                                  "0 <= start <= end <= 4095) in 'h:1:0-4096'"),
    ({"servers": "[h:1:10-5]"}, "servers: bad slot range '10-5' (expected start-end, "
                                "0 <= start <= end <= 4095) in 'h:1:10-5'"),
    ({"servers": "[h:1:0]"}, "servers: bad range or weight '0' (expected start-end or a "
                             "positive weight) in 'h:1:0'"),
    ({"servers": "[h:1:x]"}, "servers: bad range or weight 'x' (expected start-end or a "
                             "positive weight) in 'h:1:x'"),
    ({"servers": "[h:\u00b2:0-4095]"}, "servers: bad port '\u00b2' (expected 1..65535) in "
                                       "'h:\u00b2:0-4095'"),
    ({"servers": "[h:1:\u0663]"}, "servers: bad range or weight '\u0663' (expected start-end "
                                  "or a positive weight) in 'h:1:\u0663'"),
    ({"servers": "[h:99999:0-4095]"},
     "servers: bad port '99999' (expected 1..65535) in 'h:99999:0-4095'"),
    ({"servers": "[h_1.local:1:0-4095 a b]"}, f"servers: {FORMS}, got 'h_1.local:1:0-4095 a b'"),
    ({"servers": "[7]"}, f"servers: {FORMS}, got 7"),
    ({"servers": "[h:1]"}, "servers: expected 'host:port', got 'h:1'"),
    ({"servers": "[]"}, f"servers: expected a non-empty list of {FORMS[9:]}, got an empty list"),
    ({"servers": "h:1:0-4095"}, f"servers: expected a non-empty list of {FORMS[9:]}, "
                                "got 'h:1:0-4095'"),
    ({"servers": "[h:1:0-2047, h:2:2048]"},
     "servers: mixes slot ranges (host:port:start-end) and weights (host:port:weight): use one "
     "kind in a pool"),
    ({"servers": "[h:1:0-2047, h:1:2048-4095]"}, "servers: server h:1 is listed twice"),
    ({"servers": "[h:1:1, h:1:1]"}, "servers: server h:1 is listed twice"),
    ({"servers": "[h:1:0-2047 a, h:2:2048-4095 a]"}, "servers: server name 'a' is used twice"),
    ({"servers": "[h:1:1 h:2, h:2:1]"}, "servers: server name 'h:2' is used twice"),
])
def test_one_error(values: dict[str, str | None], expected: str) -> None:
    assert errors_of(pool_yaml(**values)) == [PREFIX + expected]


def test_all_errors_are_reported_at_once() -> None:
    text = (pool_yaml(timeout="abc", preconnect="yes", servers="[h:1:0-2047, h:2:2000-4095]")
            + pool_yaml("beta", hash="fnv", listen="127.0.0.1:99999"))
    assert errors_of(text) == [
        "t.yml: pool 'alpha': servers: ranges 0-2047 and 2000-4095 overlap",
        "t.yml: pool 'alpha': timeout: expected an integer >= 0 (milliseconds), got 'abc'",
        "t.yml: pool 'alpha': preconnect: expected true or false, got 'yes'",
        "t.yml: pool 'beta': listen: bad port '99999' (expected 1..65535) in '127.0.0.1:99999'",
        "t.yml: pool 'beta': hash: expected one of one_at_a_time, md5, crc16, crc32, crc32a, "
        "fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, hsieh, murmur, jenkins, got 'fnv'",
    ]


def test_several_tiling_problems_are_all_named() -> None:
    errors = errors_of(pool_yaml(servers="[h:1:0-99, h:2:50-199, h:3:300-4000]"))
    assert errors == [PREFIX + "servers: ranges 0-99 and 50-199 overlap",
                      PREFIX + "servers: slots 200-299 are not covered",
                      PREFIX + "servers: slots 4001-4095 are not covered"]


def test_bad_entry_does_not_invent_a_gap() -> None:
    errors = errors_of(pool_yaml(servers="[h:1:0-2047, h:0:2048-4095]"))
    assert errors == [PREFIX + "servers: bad port '0' (expected 1..65535) in 'h:0:2048-4095'"]


# --- across pools -------------------------------------------------------------------------------

def test_two_pools() -> None:
    text = pool_yaml() + pool_yaml("beta", listen="127.0.0.1:22122")
    assert [pool.name for pool in config.parse(text).pools] == ["alpha", "beta"]


@pytest.mark.parametrize(("first", "second"), [
    ("127.0.0.1:22121", "127.0.0.1:22121"),
    ("0.0.0.0:22121", "127.0.0.1:22121"),
    ("127.0.0.1:22121", "0.0.0.0:22121"),
    ("/tmp/p.sock 0666", "/tmp/p.sock"),
])
def test_same_listen_address(first: str, second: str) -> None:
    text = pool_yaml(listen=f"'{first}'") + pool_yaml("beta", listen=f"'{second}'")
    assert errors_of(text) == [
        f"t.yml: pool 'beta': listen: {second!r} is already used by pool 'alpha'"]


def test_same_listen_address_is_reported_with_the_pools_other_errors() -> None:
    text = (pool_yaml(timeout="soon") + pool_yaml("beta", hash="sha1")
            + pool_yaml("gamma", listen="nope") + pool_yaml("delta", listen="127.0.0.1:22122"))
    assert errors_of(text) == [
        "t.yml: pool 'alpha': timeout: expected an integer >= 0 (milliseconds), got 'soon'",
        "t.yml: pool 'beta': hash: expected one of one_at_a_time, md5, crc16, crc32, crc32a, "
        "fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, hsieh, murmur, jenkins, got 'sha1'",
        "t.yml: pool 'gamma': listen: expected 'host:port', got 'nope'",
        "t.yml: pool 'beta': listen: '127.0.0.1:22121' is already used by pool 'alpha'"]


def test_different_hosts_same_port_are_fine() -> None:
    text = pool_yaml(listen="127.0.0.1:22121") + pool_yaml("beta", listen="127.0.0.2:22121")
    assert len(config.parse(text).pools) == 2


def test_same_zookeeper_path() -> None:
    text = pool_yaml(**ZK) + pool_yaml("beta", listen="127.0.0.1:22122", **ZK)
    assert errors_of(text) == [
        "t.yml: pool 'beta': zookeeper_path: '/redis/proxy/t/127.0.0.1:22121' is already used "
        "by pool 'alpha'"]


def test_zookeeper_pool_without_timeout_gets_a_bounded_one() -> None:
    zk_keys = ("  zookeeper_host: 127.0.0.1:2181\n  zookeeper_path: /redis/proxy/x/p\n"
               "  zookeeper_redis_path: /redis/cluster/x\n")
    body = ("alpha:\n  listen: 127.0.0.1:22121\n  hash: md5\n  distribution: modula\n"
            "  redis: true\n{zk}  servers:\n   - 127.0.0.1:7001:0-2047\n"
            "   - 127.0.0.1:7002:2048-4095\n")
    assert config.parse(body.format(zk="")).pools[0].timeout_ms is None  # twemproxy's default
    assert config.parse(body.format(zk=zk_keys)).pools[0].timeout_ms == config.ZOOKEEPER_TIMEOUT_MS
    explicit = body.format(zk=zk_keys + "  timeout: 250\n")
    assert config.parse(explicit).pools[0].timeout_ms == 250
