"""How a container runs here: a process in its own mount and UTS namespaces, with a chroot.

No container runtime runs on this machine, so each container is a plain process that:
- sees the host's root filesystem through a copy-on-write overlay (writes land in a tmpfs and
  vanish when the container stops, like a container's writable layer);
- sees its volumes bind-mounted at their `mountPath`s, read-only where the spec says so;
- sees its image's commands (see `images.py`) in /.testbed/bin, first on PATH;
- has the Pod's name as hostname and a generated /etc/hosts;
- shares the host's network namespace: it must bind its pod IP (a loopback address), which
  the downward API gives it as `status.podIP`.

This needs root (mount namespaces); nothing is mounted outside the new namespace, so nothing
needs unmounting: the mounts vanish with the container's last process.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from redkube.testbed.images import IMAGE_BIN, Image

WRITABLE_LAYER_SIZE = "512m"


@dataclass(frozen=True)
class Mount:
    source: Path
    """A file or directory on this machine."""
    target: str
    """Absolute path inside the container."""
    read_only: bool = False


@dataclass(frozen=True)
class Sandbox:
    root: Path
    """An empty directory on this machine: the container's root is mounted there, privately."""
    hostname: str
    hosts_file: str
    image: Image
    mounts: Sequence[Mount] = ()
    working_dir: str = "/"
    read_only_root: bool = False


def _q(value: str | Path) -> str:
    return shlex.quote(str(value))


def _inside(root: Path, target: str) -> str:
    return _q(str(root) + "/" + target.lstrip("/"))


def setup_script(box: Sandbox) -> str:
    """The shell script that builds the container's view, then execs "$@" inside it."""
    root = box.root
    layer = root.parent / f"{root.name}.layer"
    lines = [
        "set -eu",
        f"mkdir -p {_q(layer)}",
        f"mount -t tmpfs -o size={WRITABLE_LAYER_SIZE},mode=0755 testbed-layer {_q(layer)}",
        f"mkdir {_q(layer)}/upper {_q(layer)}/work",
        "mount -t overlay testbed-root "
        f"-o lowerdir=/,upperdir={_q(layer)}/upper,workdir={_q(layer)}/work {_q(root)}",
    ]
    for system in ("/proc", "/sys", "/dev"):
        lines.append(f"mount --rbind {system} {_inside(root, system)}")
    bin_dir = _inside(root, IMAGE_BIN)
    lines.append(f"mkdir -p {bin_dir}")
    for name, binary in sorted(box.image.commands.items()):
        target = _inside(root, f"{IMAGE_BIN}/{name}")
        lines += [f": > {target}", f"mount --bind {_q(binary)} {target}"]
    for name, text in sorted(box.image.scripts.items()):
        target = _inside(root, f"{IMAGE_BIN}/{name}")
        lines += [f"printf '%s' {_q(text)} > {target}", f"chmod 0755 {target}"]
    for mount in box.mounts:
        target = _inside(root, mount.target)
        if mount.source.is_dir():
            lines.append(f"mkdir -p {target}")
        else:
            lines += [f"mkdir -p $(dirname {target})", f"[ -e {target} ] || : > {target}"]
        lines.append(f"mount --bind {_q(mount.source)} {target}")
        if mount.read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    lines += [
        f"printf '%s' {_q(box.hosts_file)} > {_inside(root, '/etc/hosts')}",
        f"printf '%s\\n' {_q(box.hostname)} > {_inside(root, '/etc/hostname')}",
        f"hostname {_q(box.hostname)}",
    ]
    if box.read_only_root:
        lines.append(f"mount -o remount,ro {_q(root)}")
    lines.append(f'exec chroot {_q(root)} env -C {_q(box.working_dir)} -- "$@"')
    return "\n".join(lines)


def launch_argv(box: Sandbox, argv: Sequence[str]) -> list[str]:
    """The host command that runs `argv` in the sandbox; its pid is the container's process.

    The process gets SIGKILL if the thread that started it exits (so a dead agent leaves no
    containers behind): start it from a thread that lives as long as the container.
    """
    return [
        "setpriv",
        "--pdeathsig",
        "KILL",
        "--",
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        setup_script(box),
        "container",
        *argv,
    ]


def enter_argv(pid: int, argv: Sequence[str]) -> list[str]:
    """The host command that runs `argv` beside a running container's process `pid`."""
    return ["nsenter", "-t", str(pid), "-m", "-u", "-r", "-w", "--", *argv]
