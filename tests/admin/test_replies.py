"""Parsing CLUSTER NODES and INFO text (Redis 7, Valkey 9) into model values."""

from __future__ import annotations

import pytest

from redkube.admin.observing import rewriting_aof
from redkube.admin.replies import (
    clients_in_wait,
    master_link_up,
    parse_cluster_nodes,
    parse_info,
    parse_node_line,
    replicating_from,
    replication_offset,
    server_version,
)
from redkube.model.addresses import Address
from redkube.model.nodes import Role

A = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"  # myself, master of 0-5460
B = "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"  # master of 5461-10922, hostname suffix
C = "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f"  # master, suspected failing, single slots
D = "07c37dfeb235213a872192d90877d0cd55635b91"  # replica of A
E = "6ec23923021cf3ffec47632106199cb7f496ce01"  # replica of C, failed
F = "824fe116063bc5fcf9f4ffd895bc17aee7731ac3"  # no address (noaddr)
G = "b1f0d4c0c2d7a8b4e7e2f3a1d9c0e8f7a6b5c4d3"  # handshake in progress

CLUSTER_NODES = f"""\
{D} 127.0.0.1:30004@31004 slave {A} 0 1426238317239 4 connected
{B} 127.0.0.1:30002@31002,host-b master - 0 1426238316232 2 connected 5461-10922
{C} 127.0.0.1:30003@31003 master,fail? - 1426238310 1426238300 3 connected 10923-16000 16005 16383
{E} 127.0.0.1:30006@31006 slave,fail {C} 1426238200000 1426238100000 3 disconnected
{F} :0@0 master,noaddr - 1426238200000 1426238100000 0 disconnected
{G} 127.0.0.1:30007@31007 handshake - 1426238318000 0 0 disconnected
{A} 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [100->-{B}] [5461-<-{B}]
"""


def test_parses_one_entry_per_line_in_order() -> None:
    parsed = parse_cluster_nodes(CLUSTER_NODES)
    assert [e.node_id for e in parsed] == [D, B, C, E, F, G, A]


def test_myself_master_with_a_range_and_open_slots() -> None:
    (myself,) = (e for e in parse_cluster_nodes(CLUSTER_NODES) if e.myself)
    assert myself.node_id == A
    assert myself.address == Address("127.0.0.1", 30001)
    assert myself.role is Role.MASTER and myself.is_master
    assert myself.master_id is None
    assert myself.config_epoch == 1
    assert myself.connected
    assert myself.slots == frozenset(range(0, 5461))
    assert dict(myself.migrating) == {100: B}
    assert dict(myself.importing) == {5461: B}
    assert 5461 not in myself.slots  # an importing slot is not served yet
    assert not (myself.failed or myself.suspected or myself.in_handshake)


def test_replica_line() -> None:
    (replica,) = (e for e in parse_cluster_nodes(CLUSTER_NODES) if e.node_id == D)
    assert replica.role is Role.REPLICA and not replica.is_master
    assert replica.master_id == A
    assert replica.address == Address("127.0.0.1", 30004)
    assert replica.slots == frozenset()
    assert replica.config_epoch == 4
    assert not replica.myself


def test_hostname_suffix_is_not_part_of_the_address() -> None:
    (entry,) = (e for e in parse_cluster_nodes(CLUSTER_NODES) if e.node_id == B)
    assert entry.address == Address("127.0.0.1", 30002)
    assert entry.slots == frozenset(range(5461, 10923))
    assert entry.migrating == {} and entry.importing == {}


def test_single_slots_mixed_with_ranges_and_suspected_failure() -> None:
    (entry,) = (e for e in parse_cluster_nodes(CLUSTER_NODES) if e.node_id == C)
    assert entry.slots == frozenset(range(10923, 16001)) | {16005, 16383}
    assert entry.suspected and not entry.failed
    assert entry.flags == frozenset({"master", "fail?"})


def test_failed_disconnected_replica() -> None:
    (entry,) = (e for e in parse_cluster_nodes(CLUSTER_NODES) if e.node_id == E)
    assert entry.failed and not entry.suspected
    assert not entry.connected
    assert entry.role is Role.REPLICA and entry.master_id == C


def test_noaddr_entry_has_no_address() -> None:
    (entry,) = (e for e in parse_cluster_nodes(CLUSTER_NODES) if e.node_id == F)
    assert entry.address is None
    assert "noaddr" in entry.flags
    assert entry.config_epoch == 0


def test_handshake_entry() -> None:
    (entry,) = (e for e in parse_cluster_nodes(CLUSTER_NODES) if e.node_id == G)
    assert entry.in_handshake
    assert entry.address == Address("127.0.0.1", 30007)
    assert not entry.connected


@pytest.mark.parametrize(
    "line",
    [
        # Valkey 9.1.2, a lone node that has not learnt its own IP yet
        "6f2ef7e6a6015628ca3b4d68902410ecd1c29ab8 :6379@16379 myself,master - 0 0 0 connected",
        # Valkey 9.1.2 with cluster-announce-hostname, same situation
        "9bbab5f1d0a9d96e273d0a3015a64b88e16903cf :27301@37301,host-27301 myself,master - 0 0 0 "
        "connected",
    ],
)
def test_lone_valkey_node_without_host_has_no_address(line: str) -> None:
    (entry,) = parse_cluster_nodes(line + "\n")
    assert entry.address is None
    assert entry.myself and entry.is_master
    assert entry.config_epoch == 0
    assert entry.slots == frozenset()


def test_real_valkey_pair_output() -> None:
    # Captured from valkey-server 9.1.2: a master with 0-8000 and its replica.
    text = (
        "b850d91d0a9bbd93319013f24f5ee527df50023e 127.0.0.1:27302@37302,host-27302 slave "
        "9bbab5f1d0a9d96e273d0a3015a64b88e16903cf 0 1795534433094 1 connected\n"
        "9bbab5f1d0a9d96e273d0a3015a64b88e16903cf 127.0.0.1:27301@37301,host-27301 "
        "myself,master - 0 0 1 connected 0-8000\n"
    )
    replica, myself = parse_cluster_nodes(text)
    assert myself.myself and myself.slots == frozenset(range(8001))
    assert myself.address == Address("127.0.0.1", 27301)
    assert replica.master_id == myself.node_id
    assert replica.address == Address("127.0.0.1", 27302)


def test_ipv6_address() -> None:
    entry = parse_node_line(f"{A} ::1:6379@16379 myself,master - 0 0 1 connected 0-16383")
    assert entry.address == Address("::1", 6379)


def test_blank_lines_are_ignored_and_short_lines_rejected() -> None:
    assert parse_cluster_nodes("\n\n") == ()
    with pytest.raises(ValueError, match="malformed"):
        parse_cluster_nodes(f"{A} 127.0.0.1:6379@16379 myself,master - 0 0\n")


# -- INFO ----------------------------------------------------------------------------------------

VALKEY_REPLICA_INFO = (
    "# Server\r\n"
    "redis_version:7.2.4\r\n"
    "server_name:valkey\r\n"
    "valkey_version:9.1.2\r\n"
    "valkey_release_stage:ga\r\n"
    "server_mode:cluster\r\n"
    "os:Linux 6.18.44-fc-v595 x86_64\r\n"
    "monotonic_clock:X86 TSC @ 2596.29 ticks/us\r\n"
    "listener0:name=tcp,bind=127.0.0.1,bind=-::1,port=27302\r\n"
    "config_file:\r\n"
    "\r\n"
    "# Memory\r\n"
    "used_memory:2750520\r\n"
    "\r\n"
    "# Replication\r\n"
    "role:slave\r\n"
    "master_host:127.0.0.1\r\n"
    "master_port:27301\r\n"
    "master_link_status:up\r\n"
    "master_last_io_seconds_ago:5\r\n"
    "master_sync_in_progress:0\r\n"
    "slave_read_repl_offset:9830\r\n"
    "slave_repl_offset:9817\r\n"
    "connected_slaves:0\r\n"
    "master_replid:af7f7facd45f239864e94331e50b38a5727ad09e\r\n"
    "master_repl_offset:9830\r\n"
    "second_repl_offset:-1\r\n"
    "\r\n"
    "# Keyspace\r\n"
    "db0:keys=3,expires=0,avg_ttl=0\r\n"
)

REDIS_MASTER_INFO = (
    "# Server\r\n"
    "redis_version:7.0.15\r\n"
    "redis_mode:cluster\r\n"
    "executable:/usr/bin/redis-server\r\n"
    "\r\n"
    "# Memory\r\n"
    "used_memory:1935992\r\n"
    "\r\n"
    "# Replication\r\n"
    "role:master\r\n"
    "connected_slaves:1\r\n"
    "slave0:ip=127.0.0.1,port=27304,state=online,offset=14,lag=0\r\n"
    "master_failover_state:no-failover\r\n"
    "master_repl_offset:14\r\n"
    "second_repl_offset:-1\r\n"
)

REDIS_REPLICA_DOWN_INFO = (
    "# Replication\n"
    "role:slave\n"
    "master_host:127.0.0.1\n"
    "master_port:27303\n"
    "master_link_status:down\n"
    "slave_repl_offset:0\n"
    "master_repl_offset:0\n"
)


def test_parse_info_merges_sections_and_keeps_values_whole() -> None:
    info = parse_info(VALKEY_REPLICA_INFO)
    assert info["valkey_version"] == "9.1.2"
    assert info["redis_version"] == "7.2.4"
    assert info["role"] == "slave"
    assert info["used_memory"] == "2750520"
    assert info["master_host"] == "127.0.0.1"
    # values may contain ':' themselves; only the first one separates
    assert info["listener0"] == "name=tcp,bind=127.0.0.1,bind=-::1,port=27302"
    assert info["monotonic_clock"] == "X86 TSC @ 2596.29 ticks/us"
    assert info["config_file"] == ""
    assert info["db0"] == "keys=3,expires=0,avg_ttl=0"
    assert not any(
        key.startswith("#") or "\r" in key or "\r" in value for key, value in info.items()
    )


def test_valkey_9_replica() -> None:
    info = parse_info(VALKEY_REPLICA_INFO)
    assert server_version(info) == "valkey 9.1.2"  # not the compatibility redis_version
    assert master_link_up(info) is True
    assert replication_offset(info) == 9817  # slave_repl_offset, not master_repl_offset


def test_redis_7_master() -> None:
    info = parse_info(REDIS_MASTER_INFO)
    assert server_version(info) == "redis 7.0.15"
    assert master_link_up(info) is None
    assert replication_offset(info) == 14
    assert info["slave0"] == "ip=127.0.0.1,port=27304,state=online,offset=14,lag=0"
    assert info["executable"] == "/usr/bin/redis-server"


def test_redis_7_replica_with_link_down() -> None:
    info = parse_info(REDIS_REPLICA_DOWN_INFO)
    assert master_link_up(info) is False
    assert replication_offset(info) == 0


@pytest.mark.parametrize(
    ("info", "offset"),
    [
        ({"role": "slave", "slave_repl_offset": "5", "master_repl_offset": "9"}, 5),
        ({"role": "master", "slave_repl_offset": "5", "master_repl_offset": "9"}, 9),
        ({"role": "master"}, 0),
        ({"role": "slave", "slave_repl_offset": ""}, 0),
        ({}, 0),
    ],
)
def test_replication_offset_reads_the_role_specific_field(
    info: dict[str, str], offset: int
) -> None:
    assert replication_offset(info) == offset


@pytest.mark.parametrize(
    ("info", "up"),
    [
        ({"role": "slave", "master_link_status": "up"}, True),
        ({"role": "slave", "master_link_status": "down"}, False),
        ({"role": "slave"}, False),
        ({"role": "master", "master_link_status": "up"}, None),
        ({}, None),
    ],
)
def test_master_link_up(info: dict[str, str], up: bool | None) -> None:
    assert master_link_up(info) is up


def test_server_version_without_any_version_field() -> None:
    assert server_version({}) == "redis ?"


def test_replicating_from_reads_master_host_and_port() -> None:
    info = parse_info("role:slave\r\nmaster_host:127.0.5.3\r\nmaster_port:6379\r\n")
    assert replicating_from(info) == Address("127.0.5.3", 6379)
    assert replicating_from(parse_info("role:master\r\n")) is None


@pytest.mark.parametrize(
    ("fields", "rewriting"),
    [
        ({"aof_enabled": "1", "aof_rewrite_in_progress": "1"}, True),
        ({"aof_enabled": "1", "aof_rewrite_scheduled": "1", "rdb_bgsave_in_progress": "1"}, True),
        # Scheduled with no child: starting within a tick, or held back after failed rewrites.
        ({"aof_enabled": "1", "aof_rewrite_scheduled": "1", "rdb_bgsave_in_progress": "0"}, False),
        ({"aof_enabled": "0", "aof_rewrite_in_progress": "1"}, False),
        ({"aof_enabled": "1"}, False),
    ],
)
def test_a_replica_rewrites_its_aof_only_while_a_child_works_on_it(
    fields: dict[str, str], rewriting: bool
) -> None:
    assert rewriting_aof(fields) is rewriting


# CLIENT LIST from Redis 7.0.15: a client blocked in WAIT, one held by CLIENT PAUSE WRITE with
# its SET, and the asking one (Valkey 9.1's adds fields, with the same flags and cmd).
CLIENT_LIST = """\
id=3 addr=127.0.0.1:52524 laddr=127.68.0.1:6390 fd=7 name= age=0 idle=0 flags=b db=0 sub=0 \
psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=20474 argv-mem=9 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 \
omem=0 tot-mem=22305 events=r cmd=wait user=default redir=-1 resp=2
id=5 addr=127.0.0.1:52538 laddr=127.68.0.1:6390 fd=8 name= age=0 idle=0 flags=b db=0 sub=0 \
psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=20474 argv-mem=5 multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 \
omem=0 tot-mem=22301 events=r cmd=set user=default redir=-1 resp=2
id=6 addr=127.0.0.1:58408 laddr=127.68.0.1:6390 fd=9 name= age=0 idle=0 flags=N db=0 sub=0 \
psub=0 ssub=0 multi=-1 qbuf=26 qbuf-free=20448 argv-mem=10 multi-mem=0 rbs=16384 rbp=16384 \
obl=0 oll=0 omem=0 tot-mem=37658 events=r cmd=client|list user=default redir=-1 resp=2
"""


def test_clients_in_wait_counts_those_blocked_in_wait_not_those_paused() -> None:
    assert clients_in_wait(CLIENT_LIST) == 1
    released = CLIENT_LIST.replace(
        "fd=7 name= age=0 idle=0 flags=b", "fd=7 name= age=0 idle=0 flags=N"
    )
    assert clients_in_wait(released) == 0  # its WAIT answered: no longer blocked
    assert clients_in_wait("") == 0
