"""ACL users without servers: the rules redkube refuses itself, what each node is given in each
state of the switch to redkube's own user, and a user's passwords over a grace period."""

from __future__ import annotations

from pathlib import Path

import pytest

from redkube.control.users import wanted
from redkube.model.users import (
    ADMIN_RULES,
    ADMIN_USER,
    CLIENT_RULES,
    AclError,
    AclUser,
    admin_user,
    check_name,
    parse_rules,
    password_hash,
)
from redkube.platform.local.configs import auth_settings
from redkube.platform.local.layout import ClusterLayout, Credentials, StateError


@pytest.mark.parametrize(
    ("rules", "why"),
    [
        ("", "no rules"),
        ("~app:* >secret", "not allowed"),
        ("~app:* #" + "a" * 64, "not allowed"),
        ("nopass +@all", "not allowed"),
        ("reset +@all", "not allowed"),
        ("off +@all", "not allowed"),
    ],
)
def test_rules_redkube_refuses(rules: str, why: str) -> None:
    with pytest.raises(AclError, match=why):
        parse_rules(rules)


def test_rules_kept_as_given() -> None:
    assert parse_rules(" ~app:*  +@read ") == ("~app:*", "+@read")


@pytest.mark.parametrize("name", ["default", ADMIN_USER, "", "a b", "x>y"])
def test_names_refused(name: str) -> None:
    with pytest.raises(AclError):
        check_name(name)


def test_every_user_but_redkube_may_find_its_way_in_the_cluster() -> None:
    app = AclUser("app", ("~app:*", "+@read"), ("h1", "h2"))
    assert app.setuser() == ("app", "reset", "on", "#h1", "#h2", "~app:*", "+@read", *CLIENT_RULES)
    assert app.config_line() == " ".join(("app", "on", "#h1", "#h2", "~app:*", "+@read",
                                          *CLIENT_RULES))  # fmt: skip
    admin = admin_user(("pw",))
    assert admin.setuser()[:4] == (ADMIN_USER, "reset", "on", f"#{password_hash('pw')}")
    assert admin.setuser()[4:] == ADMIN_RULES  # its own rules only
    assert "+get" not in admin.rules and "+@read" not in admin.rules


APP = AclUser("app", ("+@read",), ("h",))


def test_no_users_leaves_the_default_user_alone() -> None:
    acl = wanted((), Credentials("pw", ("pw",)), default_on=False)
    assert acl.commands == () and acl.keep == {"default"}


def test_first_user_teaches_redkube_before_default_goes_off() -> None:
    before = wanted((APP,), Credentials("pw", ("pw",)), default_on=True)
    assert [c[2] for c in before.commands] == [ADMIN_USER, "app"]  # default untouched
    switched = wanted((APP,), Credentials("pw", ("pw",), ADMIN_USER), default_on=False)
    assert switched.commands[-2:] == (
        ("ACL", "SETUSER", "default", "reset", "off"),
        ("CONFIG", "SET", "masteruser", ADMIN_USER),
    )
    assert switched.keep == {"default", ADMIN_USER, "app"}


def test_last_user_gone_turns_default_on_before_redkube_leaves() -> None:
    back = wanted((), Credentials("pw", ("pw", "old"), ADMIN_USER), default_on=True)
    default = next(c for c in back.commands if c[2] == "default")
    assert default[3:5] == ("reset", "on") and f"#{password_hash('old')}" in default
    assert ("CONFIG", "SET", "masteruser", "") in back.commands
    assert ADMIN_USER in back.keep and "app" not in back.keep


def test_a_users_passwords_over_a_grace_period(tmp_path: Path) -> None:
    layout = ClusterLayout(tmp_path, "c")
    layout.dir.mkdir()
    with pytest.raises(StateError, match="password"):
        layout.set_user("app", ("+@read",), None, 10, now=0)
    layout.set_user("app", ("+@read",), "first", 10, now=0)
    layout.set_user("app", ("+@read",), "second", 10, now=100)
    assert layout.users(105) == (AclUser("app", ("+@read",), ("second", "first")),)
    assert layout.users(111) == (AclUser("app", ("+@read",), ("second",)),)
    layout.set_user("app", ("+@write",), None, 10, now=105)  # rules only: passwords kept
    assert layout.users(105)[0].hashes == ("second", "first")
    layout.set_user("app", ("+@write",), "second", 10, now=106)  # the same again: no change
    assert layout.users(115) == (AclUser("app", ("+@write",), ("second",)),)
    assert (layout.dir / "users.json").stat().st_mode & 0o777 == 0o600
    assert layout.delete_user("app") and not layout.delete_user("app")
    assert layout.users(0) == ()


def test_a_starting_node_gets_the_users_of_the_moment() -> None:
    one = Credentials("pw", ("pw",))
    assert [k for k, _ in auth_settings(one)] == ["requirepass", "masterauth"]
    # Users, redkube not switched yet: the default user keeps the password beside the users.
    before = auth_settings(one, (APP,))
    assert [k for k, _ in before] == ["requirepass", "user", "user", "masterauth"]
    assert [v.split()[0] for k, v in before if k == "user"] == [ADMIN_USER, "app"]
    # Switched: the default user off, replicas authenticate as redkube.
    switched = auth_settings(Credentials("pw", ("pw",), ADMIN_USER), (APP,))
    assert switched[:2] == [("user", "default off resetpass"), ("masteruser", ADMIN_USER)]
    assert "pw" not in " ".join(v for k, v in switched if k == "user")  # hashes only
