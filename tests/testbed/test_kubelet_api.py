"""The kubelet API behind `kubectl logs` and `kubectl exec`, reached through a real apiserver.

The server is real; the container runtime is a fake: logs are temp files and exec runs the
command as given. The node is a Node object of our own whose status points at our server, and
the Pods are bound to it directly: no scheduler or node agent is involved.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import select
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from redkube.testbed import ControlPlane
from redkube.testbed.apiclient import ApiClient, ApiError
from redkube.testbed.certificates import Certificates
from redkube.testbed.kubeletapi import ExecTarget, KubeletServer
from redkube.testbed.processes import pid_alive
from redkube.testbed.websockets import (
    CloseCode,
    FrameParser,
    Message,
    Opcode,
    ProtocolError,
    accept_key,
    close_payload,
    encode_frame,
    new_key,
    parse_close,
)
from tests.testbed.kube import eventually as poll_until

NAMESPACE = "kubelet-api-test"
NODE = "kubelet-api-test"
POD = "box"
CONTAINERS = ("main", "follow", "sidecar")
"""`main` runs and logs; `follow` only logs; `sidecar` is in the Pod but unknown to the runtime."""
BROKEN_POD = "broken"
"""A pod name the fake runtime fails on, to see a runtime failure become a plain 500."""

LOG = "".join(f"line {i}: the quick brown fox\n" for i in range(1, 8))
PREVIOUS_LOG = "the previous instance said goodbye\n"
ENV_MARKER = "set-by-the-runtime"
PROMPT = "kubelet-api-test> "
TIMEOUT = 30.0


# --- the fake container runtime ----------------------------------------------------------------


class FakeRuntime:
    """Logs are files in `directory`; exec runs the command itself, in `directory`."""

    def __init__(self, directory: Path, pod: str) -> None:
        self.directory = directory
        self.pod = pod
        self.logs = {"main": directory / "main.log", "follow": directory / "follow.log"}
        self.previous_logs = {"main": directory / "main-previous.log"}
        self.exec_calls: list[tuple[str, str, str, list[str]]] = []
        self.lookups: Counter[str] = Counter()
        """log_file calls per container; a follower asks every second."""
        self._lock = threading.Lock()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(directory),
            "MARKER": ENV_MARKER,
            "PS1": PROMPT,
        }

    def log_file(self, namespace: str, pod: str, container: str, previous: bool) -> Path | None:
        with self._lock:
            self.lookups[container] += 1
        if pod == BROKEN_POD:
            raise RuntimeError("the disk is on fire")
        if (namespace, pod) != (NAMESPACE, self.pod):
            return None
        return (self.previous_logs if previous else self.logs).get(container)

    def exec_target(
        self, namespace: str, pod: str, container: str, command: list[str]
    ) -> ExecTarget | None:
        self.exec_calls.append((namespace, pod, container, command))
        if (namespace, pod, container) != (NAMESPACE, self.pod, "main"):
            return None
        return ExecTarget(argv=list(command), env=dict(self.env), cwd=str(self.directory))


# --- objects in the API ------------------------------------------------------------------------


eventually = partial(poll_until, timeout=TIMEOUT, interval=0.1)


def register_node(api: ApiClient, name: str, port: int) -> None:
    """A Node whose kubelet is our server; tainted so that no scheduled Pod lands on it."""
    api.create(
        "/api/v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": {
                "taints": [{"key": "redkube.test/kubelet-api", "effect": "NoSchedule"}],
            },
        },
    )
    api.patch(
        f"/api/v1/nodes/{name}/status",
        {
            "status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }
        },
    )


def create_pod(api: ApiClient, name: str, node: str) -> None:
    """A Pod bound to `node`; retried until the namespace's `default` ServiceAccount exists."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "containers": [{"name": c, "image": "busybox"} for c in CONTAINERS],
        },
    }
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            api.create(f"/api/v1/namespaces/{NAMESPACE}/pods", pod)
            return
        except ApiError as error:
            if time.monotonic() > deadline:
                raise
            if error.conflict:
                return
            time.sleep(0.2)


def delete_quietly(api: ApiClient, path: str) -> None:
    with contextlib.suppress(ApiError):
        api.delete(path, {"gracePeriodSeconds": 0})


def start_server(certs: Certificates, runtime: FakeRuntime) -> KubeletServer:
    server = KubeletServer(
        "127.0.0.1",
        0,
        runtime,
        cert=certs.kubelet_serving.cert,
        key=certs.kubelet_serving.key,
        client_ca=certs.ca.cert,
    )
    server.start()
    return server


@dataclass
class Bed:
    control_plane: ControlPlane
    certs: Certificates
    server: KubeletServer
    runtime: FakeRuntime
    directory: Path

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self.control_plane.kubectl(
            "-n", NAMESPACE, *args, input=input, check=False, timeout=timeout
        )

    def kubectl_argv(self, *args: str) -> list[str]:
        cp = self.control_plane
        return [str(cp.bindir / "kubectl"), f"--kubeconfig={cp.kubeconfig}", "-n", NAMESPACE, *args]


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[ApiClient]:
    client = ApiClient.from_kubeconfig(control_plane.kubeconfig)
    with contextlib.suppress(ApiError):
        client.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
    yield client
    delete_quietly(client, f"/api/v1/namespaces/{NAMESPACE}")


@pytest.fixture(scope="module")
def bed(
    control_plane: ControlPlane, api: ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bed]:
    assert control_plane.certificates is not None
    directory = tmp_path_factory.mktemp("kubelet-api")
    runtime = FakeRuntime(directory, POD)
    runtime.logs["main"].write_text(LOG)
    runtime.logs["follow"].write_text("")
    runtime.previous_logs["main"].write_text(PREVIOUS_LOG)
    server = start_server(control_plane.certificates, runtime)
    try:
        register_node(api, NODE, server.port)
        create_pod(api, POD, NODE)
        yield Bed(control_plane, control_plane.certificates, server, runtime, directory)
    finally:
        server.stop()
        delete_quietly(api, f"/api/v1/namespaces/{NAMESPACE}/pods/{POD}")
        delete_quietly(api, f"/api/v1/nodes/{NODE}")


# --- talking to the server directly --------------------------------------------------------------


def client_context(certs: Certificates, *, with_certificate: bool = True) -> ssl.SSLContext:
    """Trusts the CA; no host name check (the serving certificate may name only node IPs)."""
    context = ssl.create_default_context(cafile=str(certs.ca.cert))
    context.check_hostname = False
    if with_certificate:
        context.load_cert_chain(str(certs.kubelet_client.cert), str(certs.kubelet_client.key))
    return context


def https(
    bed: Bed, path: str, method: str = "GET", *, context: ssl.SSLContext | None = None
) -> tuple[int, str, str]:
    """(status, content type, body) of one request straight to the kubelet API."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", bed.server.port, context=context or client_context(bed.certs), timeout=10
    )
    try:
        connection.request(method, path)
        reply = connection.getresponse()
        return reply.status, reply.getheader("Content-Type", ""), reply.read().decode()
    finally:
        connection.close()


class WebSocketClient:
    """A minimal client for the exec endpoint, to test what kubectl does not exercise."""

    def __init__(self, bed: Bed, query: str, protocols: list[str]) -> None:
        raw = socket.create_connection(("127.0.0.1", bed.server.port), timeout=10)
        self.sock = client_context(bed.certs).wrap_socket(raw)
        self.key = new_key()
        path = f"/exec/{NAMESPACE}/{POD}/main?{query}"
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: kubelet\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {', '.join(protocols)}\r\n"
                "\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            assert chunk, f"connection closed during the handshake: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        self.parser = FrameParser(expect_masked=False)
        self.pending = self.parser.feed(rest) if self.status == 101 else []
        self.body = rest
        if self.status != 101:  # a plain error reply
            while len(self.body) < int(self.headers.get("content-length", "0")):
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                self.body += chunk

    def send(self, opcode: Opcode, payload: bytes, *, fin: bool = True) -> None:
        self.sock.sendall(encode_frame(opcode, payload, fin=fin, mask=os.urandom(4)))

    def receive_all(self, timeout: float = TIMEOUT) -> list[Message]:
        """Every message until the server's close frame (answered) or end of stream."""
        messages = list(self.pending)
        deadline = time.monotonic() + timeout
        while not any(m.opcode is Opcode.CLOSE for m in messages):
            assert time.monotonic() < deadline, f"no close frame within {timeout:g}s: {messages}"
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            messages += self.parser.feed(chunk)
        close = [m for m in messages if m.opcode is Opcode.CLOSE]
        if close:
            with contextlib.suppress(OSError):
                self.send(Opcode.CLOSE, close[0].data[:2])
        return messages

    def close(self) -> None:
        self.sock.close()


def channel_data(messages: list[Message], channel: int) -> bytes:
    return b"".join(
        m.data[1:] for m in messages if m.opcode is Opcode.BINARY and m.data[:1] == bytes([channel])
    )


def close_code(messages: list[Message]) -> int | None:
    closes = [m for m in messages if m.opcode is Opcode.CLOSE]
    assert closes, f"no close frame in {messages}"
    return parse_close(closes[0].data)[0]


def wait_for_pid(path: Path) -> int:
    eventually(lambda: path.is_file() and path.read_text().strip().isdigit(), f"{path} written")
    return int(path.read_text())


def read_until(fd: int, needle: bytes, transcript: bytearray, timeout: float = TIMEOUT) -> None:
    """Read `fd` into `transcript` until `needle` appears in it; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while needle not in transcript:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {needle!r} within {timeout:g}s in {bytes(transcript)!r}"
        readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if not readable:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        assert chunk, f"end of output before {needle!r}: {bytes(transcript)!r}"
        transcript += chunk


def children(of: int) -> set[int]:
    """Live (not zombie) processes whose parent is `of`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == of:
            found.add(int(entry.name))
    return found


# --- health and errors ---------------------------------------------------------------------------


def test_healthz_needs_a_client_certificate(bed: Bed) -> None:
    assert https(bed, "/healthz") == (200, "text/plain; charset=utf-8", "ok")
    with pytest.raises((OSError, http.client.HTTPException)):
        https(bed, "/healthz", context=client_context(bed.certs, with_certificate=False))


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", f"/containerLogs/{NAMESPACE}/{POD}", 400, "bad path"),
        ("GET", f"/containerLogs/{NAMESPACE}/{POD}/main/extra", 400, "bad path"),
        ("GET", f"/containerLogs/{NAMESPACE}/{POD}/main?tailLines=-1", 400, "tailLines"),
        ("GET", f"/containerLogs/{NAMESPACE}/{POD}/main?follow=maybe", 400, "follow"),
        ("GET", f"/containerLogs/{NAMESPACE}/{POD}/main?stream=Stdout", 400, "stream=All"),
        ("GET", f"/containerLogs/{NAMESPACE}/{POD}/sidecar", 404, 'container "sidecar"'),
        (
            "GET",
            f"/containerLogs/{NAMESPACE}/{POD}/follow?previous=true",
            404,
            'previous terminated container "follow" in pod "box"',
        ),
        ("GET", f"/containerLogs/{NAMESPACE}/{BROKEN_POD}/main", 500, "the disk is on fire"),
        ("POST", f"/containerLogs/{NAMESPACE}/{POD}/main", 405, "only GET"),
        ("GET", f"/exec/{NAMESPACE}/{POD}/main?command=true&stdout=1", 400, "WebSocket upgrade"),
        ("GET", f"/exec/{NAMESPACE}/{POD}/main?stdout=1", 400, "no command"),
        ("GET", f"/exec/{NAMESPACE}/{POD}/main?command=true", 400, "at least one of"),
        ("GET", f"/exec/{NAMESPACE}/{POD}/sidecar?command=true&stdout=1", 404, "not running"),
        ("GET", "/pods", 404, "no such endpoint"),
        ("PUT", "/healthz", 501, "Unsupported method"),
    ],
)
def test_errors_are_plain_text(bed: Bed, method: str, path: str, status: int, message: str) -> None:
    got_status, content_type, body = https(bed, path, method)
    assert (got_status, content_type) == (status, "text/plain; charset=utf-8"), body
    assert message in body
    assert "Traceback" not in body


# --- kubectl logs --------------------------------------------------------------------------------


def test_logs(bed: Bed) -> None:
    done = bed.kubectl("logs", POD, "-c", "main")
    assert (done.returncode, done.stdout) == (0, LOG), done.stderr


def test_logs_tail_and_limit(bed: Bed) -> None:
    lines = LOG.splitlines(keepends=True)
    assert bed.kubectl("logs", POD, "-c", "main", "--tail=2").stdout == "".join(lines[-2:])
    assert bed.kubectl("logs", POD, "-c", "main", "--tail=0").stdout == ""
    assert bed.kubectl("logs", POD, "-c", "main", "--tail=100").stdout == LOG
    assert bed.kubectl("logs", POD, "-c", "main", "--limit-bytes=9").stdout == LOG[:9]
    # timestamps are accepted and ignored: the log has none
    assert bed.kubectl("logs", POD, "-c", "main", "--timestamps", "--since=1h").stdout == LOG


# The apiserver turns a kubelet's 404 into a generic NotFound (our message goes into the
# Status details, which kubectl does not print); test_errors_are_plain_text reads the message.
NOT_FOUND = "Error from server (NotFound): the server could not find the requested resource"


def test_logs_previous(bed: Bed) -> None:
    assert bed.kubectl("logs", POD, "-c", "main", "--previous").stdout == PREVIOUS_LOG
    done = bed.kubectl("logs", POD, "-c", "follow", "--previous")
    assert done.returncode != 0
    assert NOT_FOUND in done.stderr


def test_logs_of_an_unknown_container(bed: Bed) -> None:
    done = bed.kubectl("logs", POD, "-c", "sidecar")
    assert done.returncode != 0
    assert NOT_FOUND in done.stderr
    done = bed.kubectl("logs", POD, "-c", "nope")
    assert done.returncode != 0
    assert "container nope is not valid for pod box" in done.stderr  # the apiserver's check


def test_logs_follow(bed: Bed) -> None:
    log = bed.runtime.logs["follow"]
    log.write_text("before\n")
    follower = subprocess.Popen(
        bed.kubectl_argv("logs", "-f", POD, "-c", "follow"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert follower.stdout is not None
        transcript = bytearray()
        read_until(follower.stdout.fileno(), b"before\n", transcript)
        with log.open("a") as file:
            file.write("appended later\n")
        read_until(follower.stdout.fileno(), b"appended later\n", transcript)
        assert follower.poll() is None, "kubectl logs -f ended by itself"

        # When the runtime names another file (the container restarted), following ends.
        bed.runtime.logs["follow"] = bed.directory / "follow-restarted.log"
        try:
            assert follower.wait(timeout=TIMEOUT) == 0
        finally:
            bed.runtime.logs["follow"] = log
        assert bytes(transcript) == b"before\nappended later\n"
    finally:
        follower.kill()
        follower.wait()


def test_logs_follow_ends_when_the_client_goes_away(bed: Bed) -> None:
    bed.runtime.logs["follow"].write_text("")
    before = bed.runtime.lookups["follow"]
    follower = subprocess.Popen(
        bed.kubectl_argv("logs", "-f", POD, "-c", "follow"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # While following, the server asks the runtime every second whether the file is current.
        eventually(lambda: bed.runtime.lookups["follow"] >= before + 3, "the follower polls")
    finally:
        follower.kill()
        follower.wait()
    time.sleep(2)  # the server notices within a poll, and asks no more
    settled = bed.runtime.lookups["follow"]
    time.sleep(2.5)
    assert bed.runtime.lookups["follow"] == settled


# --- kubectl exec ---------------------------------------------------------------------------------


def test_exec_stdout_and_stderr(bed: Bed) -> None:
    done = bed.kubectl(
        "exec", POD, "-c", "main", "--", "sh", "-c", "echo out; echo err >&2; exit 0"
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "err\n"), done.stderr
    command = ["sh", "-c", "echo out; echo err >&2; exit 0"]
    assert (NAMESPACE, POD, "main", command) in bed.runtime.exec_calls


def test_exec_gets_the_runtimes_environment_and_directory(bed: Bed) -> None:
    done = bed.kubectl("exec", POD, "-c", "main", "--", "sh", "-c", "echo $MARKER; pwd")
    assert done.stdout.splitlines() == [ENV_MARKER, str(bed.directory)], done.stderr


def test_exec_exit_code(bed: Bed) -> None:
    done = bed.kubectl("exec", POD, "-c", "main", "--", "sh", "-c", "echo bye; exit 7")
    assert (done.returncode, done.stdout) == (7, "bye\n")
    assert "command terminated with exit code 7" in done.stderr


def test_exec_stdin(bed: Bed) -> None:
    done = bed.kubectl("exec", "-i", POD, "-c", "main", "--", "cat", input="hello\nworld\n")
    assert (done.returncode, done.stdout) == (0, "hello\nworld\n"), done.stderr
    big = "".join(f"{i:08d} some text to make the line longer\n" for i in range(20_000))
    done = bed.kubectl("exec", "-i", POD, "-c", "main", "--", "cat", input=big)
    assert done.returncode == 0, done.stderr
    assert done.stdout == big


def test_exec_interactive_terminal(bed: Bed) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    try:
        kubectl = subprocess.Popen(
            bed.kubectl_argv("exec", "-it", POD, "-c", "main", "--", "sh"),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
    finally:
        os.close(slave)
    transcript = bytearray()
    try:
        read_until(master, PROMPT.encode(), transcript)
        os.write(master, b"echo hello-$((1+1))\r")
        read_until(master, b"hello-2", transcript)
        os.write(master, b"stty size\r")  # kubectl sent our terminal's size
        read_until(master, b"33 101", transcript)
        os.write(master, b"exit\r")
        assert kubectl.wait(timeout=TIMEOUT) == 0, bytes(transcript)
    finally:
        kubectl.kill()
        kubectl.wait()
        os.close(master)


def test_exec_in_an_unknown_container(bed: Bed) -> None:
    done = bed.kubectl("exec", POD, "-c", "sidecar", "--", "true")
    assert done.returncode != 0
    assert 'container "sidecar" in pod "box"' in done.stderr
    assert "is not running on this node" in done.stderr
    done = bed.kubectl("exec", POD, "-c", "nope", "--", "true")
    assert done.returncode != 0
    assert "container nope is not valid for pod box" in done.stderr  # the apiserver's check


def test_exec_of_a_missing_command(bed: Bed) -> None:
    done = bed.kubectl("exec", POD, "-c", "main", "--", "no-such-command-here")
    assert done.returncode != 0
    assert "no-such-command-here" in done.stderr
    assert "Traceback" not in done.stderr


def test_client_going_away_kills_the_process(bed: Bed) -> None:
    pidfile = bed.directory / "going-away.pid"
    kubectl = subprocess.Popen(
        bed.kubectl_argv(
            "exec", POD, "-c", "main", "--", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pid = wait_for_pid(pidfile)
        assert pid_alive(pid)
    finally:
        kubectl.kill()
        kubectl.wait()
    eventually(lambda: not pid_alive(pid), "the exec'd process is killed")


# --- the WebSocket protocol, straight to the server -----------------------------------------------


def test_v4_with_fragments_and_pings(bed: Bed) -> None:
    query = "command=head&command=-c&command=10&input=1&output=1&error=1"
    client = WebSocketClient(bed, query, ["v4.channel.k8s.io", "v5.channel.k8s.io"])
    try:
        assert client.status == 101
        assert client.headers["sec-websocket-protocol"] == "v4.channel.k8s.io"
        assert client.headers["sec-websocket-accept"] == accept_key(client.key)
        client.send(Opcode.BINARY, b"\x00hello", fin=False)
        client.send(Opcode.PING, b"are you there")
        client.send(Opcode.CONTINUATION, b"-wor", fin=False)
        client.send(Opcode.CONTINUATION, b"ld!!\n")
        messages = client.receive_all()
    finally:
        client.close()
    assert Message(Opcode.PONG, b"are you there") in messages
    assert channel_data(messages, 1) == b"hello-worl"
    assert json.loads(channel_data(messages, 3)) == {"metadata": {}, "status": "Success"}
    assert close_code(messages) == CloseCode.NORMAL


def test_v5_stdin_close_and_exit_code(bed: Bed) -> None:
    query = urllib.parse.urlencode(
        {"command": ["sh", "-c", "cat; echo to-stderr >&2; exit 3"], "stdin": "1", "stdout": "1",
         "stderr": "1"},
        doseq=True,
    )  # fmt: skip
    client = WebSocketClient(bed, query, ["v5.channel.k8s.io"])
    try:
        assert client.headers["sec-websocket-protocol"] == "v5.channel.k8s.io"
        client.send(Opcode.BINARY, b"\x00abc")
        client.send(Opcode.BINARY, b"\xff\x00")  # close stdin
        messages = client.receive_all()
    finally:
        client.close()
    assert channel_data(messages, 1) == b"abc"
    assert channel_data(messages, 2) == b"to-stderr\n"
    status = json.loads(channel_data(messages, 3))
    assert status["status"] == "Failure"
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert close_code(messages) == CloseCode.NORMAL


def test_resize_on_a_terminal(bed: Bed) -> None:
    query = urllib.parse.urlencode(
        {"command": ["sh", "-c", "sleep 0.5; stty size"], "stdin": "1", "stdout": "1", "tty": "1"},
        doseq=True,
    )
    client = WebSocketClient(bed, query, ["v5.channel.k8s.io"])
    try:
        client.send(Opcode.BINARY, b'\x04{"Width":120,"Height":40}')
        messages = client.receive_all()
    finally:
        client.close()
    assert b"40 120" in channel_data(messages, 1)
    assert json.loads(channel_data(messages, 3))["status"] == "Success"


def test_unmasked_client_frame_is_a_protocol_error(bed: Bed) -> None:
    pidfile = bed.directory / "unmasked.pid"
    query = urllib.parse.urlencode(
        {"command": ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"], "stdout": "1"},
        doseq=True,
    )
    client = WebSocketClient(bed, query, ["v5.channel.k8s.io"])
    try:
        pid = wait_for_pid(pidfile)
        client.sock.sendall(encode_frame(Opcode.BINARY, b"\x00oops"))  # no mask
        messages = client.receive_all()
    finally:
        client.close()
    assert close_code(messages) == CloseCode.PROTOCOL_ERROR
    eventually(lambda: not pid_alive(pid), "the exec'd process is killed")


def test_unsupported_subprotocol(bed: Bed) -> None:
    client = WebSocketClient(bed, "command=true&stdout=1", ["channel.k8s.io"])
    client.close()
    assert client.status == 400
    assert b"v5.channel.k8s.io" in client.body


# --- stopping ------------------------------------------------------------------------------------


def test_stop_ends_sessions_and_leaves_no_process(
    control_plane: ControlPlane, api: ApiClient, tmp_path: Path
) -> None:
    assert control_plane.certificates is not None
    pod, node = "stopper", "kubelet-api-test-stop"
    before = children(os.getpid())  # e.g. other fixtures' processes (the operator's)
    runtime = FakeRuntime(tmp_path, pod)
    runtime.logs["main"].write_text("first\n")
    server = start_server(control_plane.certificates, runtime)
    kubectls: list[subprocess.Popen[bytes]] = []
    try:
        register_node(api, node, server.port)
        create_pod(api, pod, node)
        bed = Bed(control_plane, control_plane.certificates, server, runtime, tmp_path)
        script = f"sleep 300 & echo $! > {tmp_path}/bg.pid; echo $$ > {tmp_path}/sh.pid; wait"
        for args in (
            ("exec", pod, "-c", "main", "--", "sh", "-c", script),
            ("exec", "-i", pod, "-c", "main", "--", "cat"),
            ("logs", "-f", pod, "-c", "main"),
        ):
            kubectls.append(
                subprocess.Popen(
                    bed.kubectl_argv(*args),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            )
        pids = [wait_for_pid(tmp_path / "bg.pid"), wait_for_pid(tmp_path / "sh.pid")]
        follower = kubectls[-1]
        assert follower.stdout is not None
        read_until(follower.stdout.fileno(), b"first\n", bytearray())
        not_exec = before | set(control_plane.pids.values()) | {k.pid for k in kubectls}
        eventually(lambda: len(children(os.getpid()) - not_exec) >= 2, "both exec'd processes run")

        began = time.monotonic()
        server.stop()
        assert time.monotonic() - began < 10

        assert not [pid for pid in pids if pid_alive(pid)]
        for kubectl in kubectls:
            kubectl.wait(timeout=TIMEOUT)
        assert not children(os.getpid()) - not_exec
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
        server.stop()  # a second stop is harmless
    finally:
        for kubectl in kubectls:
            kubectl.kill()
            kubectl.wait()
        server.stop()
        delete_quietly(api, f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}")
        delete_quietly(api, f"/api/v1/nodes/{node}")


# --- the framing alone ---------------------------------------------------------------------------


def test_accept_key_of_rfc_6455() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parser_reassembles_fragments_fed_byte_by_byte() -> None:
    mask = b"\x01\x02\x03\x04"
    stream = b"".join(
        [
            encode_frame(Opcode.TEXT, b"hel", fin=False, mask=mask),
            encode_frame(Opcode.PING, b"ping", mask=mask),  # between fragments
            encode_frame(Opcode.CONTINUATION, b"lo", mask=mask),
            encode_frame(Opcode.BINARY, b"x" * 70_000, mask=mask),  # 64-bit length
            encode_frame(Opcode.BINARY, b"y" * 300, mask=mask),  # 16-bit length
            encode_frame(Opcode.BINARY, b"", mask=mask),
            encode_frame(Opcode.CLOSE, close_payload(1000, "bye"), mask=mask),
            b"whatever follows a close frame is ignored",
        ]
    )
    parser = FrameParser(expect_masked=True)
    messages: list[Message] = []
    for index in range(len(stream)):
        messages += parser.feed(stream[index : index + 1])
    assert messages == [
        Message(Opcode.PING, b"ping"),
        Message(Opcode.TEXT, b"hello"),
        Message(Opcode.BINARY, b"x" * 70_000),
        Message(Opcode.BINARY, b"y" * 300),
        Message(Opcode.BINARY, b""),
        Message(Opcode.CLOSE, close_payload(1000, "bye")),
    ]
    assert parse_close(messages[-1].data) == (1000, "bye")


def raw_frame(first: int, payload: bytes, *, masked: bool = True) -> bytes:
    """A frame with any first byte (the mask is zero, so the payload goes as is)."""
    size = len(payload)
    if size < 126:
        header = bytes([first, (0x80 if masked else 0) | size])
    else:
        header = bytes([first, (0x80 if masked else 0) | 126]) + struct.pack("!H", size)
    return header + (b"\0\0\0\0" if masked else b"") + payload


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        pytest.param(raw_frame(0x82, b"x", masked=False), 1002, id="unmasked"),
        pytest.param(raw_frame(0xC2, b"x"), 1002, id="reserved-bit"),
        pytest.param(raw_frame(0x83, b"x"), 1002, id="unknown-opcode"),
        pytest.param(raw_frame(0x09, b"x"), 1002, id="fragmented-ping"),
        pytest.param(raw_frame(0x89, b"x" * 126), 1002, id="long-ping"),
        pytest.param(raw_frame(0x80, b"x"), 1002, id="stray-continuation"),
        pytest.param(raw_frame(0x02, b"x") + raw_frame(0x82, b"y"), 1002, id="interleaved"),
        pytest.param(raw_frame(0x81, b"\xff"), 1007, id="text-not-utf8"),
        pytest.param(raw_frame(0x82, b"x" * 11), 1009, id="too-big"),
        pytest.param(raw_frame(0x02, b"x" * 6) + raw_frame(0x80, b"x" * 6), 1009, id="too-big-2"),
        pytest.param(raw_frame(0x88, b"\x03"), 1002, id="close-of-one-byte"),
        pytest.param(raw_frame(0x88, struct.pack("!H", 1005)), 1002, id="close-code-1005"),
    ],
)
def test_parser_rejects_what_rfc_6455_forbids(frames: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as raised:
        FrameParser(expect_masked=True, max_message=10).feed(frames)
    assert raised.value.code == code
