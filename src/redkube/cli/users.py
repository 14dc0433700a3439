"""`redkube user set|delete|list`: a local cluster's ACL users.

The command checks the user (its name here, its rules by the server's own parser), writes it to
the cluster's ``users.json`` and waits until every running node has it (the supervisor gives it
to them, see ``control.users``). No password is printed or passed in an argument: it is read
from a file, and only its SHA-256 is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from pathlib import Path

from redkube.admin.connections import AdminError
from redkube.cli.exits import ExitStatus, UserError
from redkube.cli.local import admin_pool, is_ours_listening, out, supervisor_pid
from redkube.model.users import AclError, check_name, fingerprint, parse_rules, password_hash
from redkube.platform.local.layout import ClusterLayout, ClusterRecord, state_root

POLL_S = 0.2


def user(args: argparse.Namespace) -> ExitStatus:
    layout = ClusterLayout(state_root(), args.name)
    record = layout.load()
    try:
        if args.action == "list":
            return list_users(layout)
        name = check_name(args.user)
        if args.action == "delete":
            if not layout.delete_user(name):
                raise UserError(f"cluster {args.name!r} has no user {name!r}")
            return wait_applied(layout, name, args.timeout)
        rules = parse_rules(args.rules) if args.rules is not None else None
    except AclError as error:
        raise UserError(str(error), ExitStatus.USAGE) from error
    known = {u.name: u for u in layout.users(time.time())}
    if rules is None:
        if name not in known:
            raise UserError(f"user {name!r} is new: give its rules (--rules)", ExitStatus.USAGE)
        rules = known[name].rules
    digest = read_password_hash(args.password_file) if args.password_file else None
    if digest is None and name not in known:
        raise UserError(f"user {name!r} is new: give its password (--password-file)")
    refusal = asyncio.run(server_refusal(layout, record, rules))
    if refusal is not None:
        raise UserError(f"the server refuses the rules {' '.join(rules)!r}: {refusal}")
    layout.set_user(name, rules, digest, args.password_grace, time.time())
    return wait_applied(layout, name, args.timeout)


def read_password_hash(path: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as error:
        raise UserError(f"cannot read the password file {path}: {error.strerror}") from error
    if not text or any(c.isspace() for c in text):
        raise UserError(f"the password file {path} must hold one password, with no space")
    return password_hash(text)


async def server_refusal(
    layout: ClusterLayout, record: ClusterRecord, rules: tuple[str, ...]
) -> str | None:
    """The rules tried on a scratch user of a running node (off, no password, deleted at
    once): the server's own parser says whether they hold."""
    running = [m for m in record.members if is_ours_listening(layout, m)]
    if not running:
        raise UserError(f"cluster {layout.name!r} is not running: `redkube up --name "
                        f"{layout.name}` first")  # fmt: skip
    scratch = f"redkube-check-{secrets.token_hex(4)}"
    async with admin_pool(layout, record) as pool:
        client = pool.client(running[0].address)
        try:
            await client.command("ACL", "SETUSER", scratch, "reset", "off", *rules)
        except AdminError as error:
            return str(error).rsplit(": ", 1)[-1]
        finally:
            await client.command("ACL", "DELUSER", scratch)
    return None


def wait_applied(layout: ClusterLayout, name: str, timeout: float) -> ExitStatus:
    """Until the supervisor has given every running node the users as they are in the file
    now (this one added, changed or gone)."""
    present = any(u.name == name for u in layout.users(time.time()))
    what = f"user {name!r} {'on' if present else 'gone from'} every node"
    if supervisor_pid(layout) is None:
        out.print(f"{what} when the cluster runs again (`redkube up --name {layout.name}`)")
        return ExitStatus.SUCCESS
    deadline = time.monotonic() + timeout
    with out.status(f"waiting: {what}", spinner="dots"):
        while time.monotonic() < deadline:
            if layout.users_applied() == fingerprint(layout.users(time.time())):
                out.print(what)
                return ExitStatus.SUCCESS
            time.sleep(POLL_S)
    raise UserError(
        f"not done after {timeout:.0f}s: the supervisor keeps trying, see `redkube status "
        f"--name {layout.name}`",
        ExitStatus.TIMEOUT,
    )


def list_users(layout: ClusterLayout) -> ExitStatus:
    users = layout.users(time.time())
    if not users:
        out.print(f"cluster {layout.name!r} has no ACL users (everyone is the default user)")
    for found in users:
        passwords = "1 password" if len(found.hashes) == 1 else f"{len(found.hashes)} passwords"
        out.print(f"{found.name}  {' '.join(found.rules)}  ({passwords})", markup=False)
    return ExitStatus.SUCCESS
