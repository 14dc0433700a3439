"""The kubelet API that kube-apiserver proxies `kubectl logs` and `kubectl exec` to.

The node agent runs a `KubeletServer` per node and plugs its container runtime in through the
`ContainerRuntime` protocol: where a container's log file is, and what to run for an exec.

    server = KubeletServer("127.0.0.1", 10250, runtime, cert, key, client_ca)
    server.start()
    ...
    server.stop()

Endpoints (HTTPS; every client must present a certificate signed by `client_ca`):

- `GET /healthz`: 200 `ok`.
- `GET /containerLogs/{namespace}/{pod}/{container}`: the container's log file, see
  `KubeletServer` for the query parameters.
- `GET|POST /exec/{namespace}/{pod}/{container}?command=...`: a WebSocket upgrade speaking the
  Kubernetes remote-command subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io`.

Errors are plain-text bodies: 400 for a malformed request, 404 for a container the runtime
does not know, 500 (with no traceback) when the runtime or the server fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar, cast

from redkube.testbed.websockets import (
    CloseCode,
    FrameParser,
    Opcode,
    ProtocolError,
    accept_key,
    close_payload,
    encode_frame,
    header_tokens,
    parse_close,
    select_subprotocol,
    valid_key,
)

_log = logging.getLogger(__name__)

# --- the remote-command subprotocol (k8s.io/apimachinery/pkg/util/remotecommand) -------------

PROTOCOL_V5 = "v5.channel.k8s.io"
PROTOCOL_V4 = "v4.channel.k8s.io"
SUPPORTED_PROTOCOLS = (PROTOCOL_V5, PROTOCOL_V4)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

# --- timing and sizes ---------------------------------------------------------------------------

HANDSHAKE_TIMEOUT = 10.0
"""Seconds for a client's TLS handshake."""
REQUEST_TIMEOUT = 60.0
"""Seconds a kept-alive connection may sit idle, or a write to a slow client may block."""
POLL = 0.2
"""Seconds between checks, in every loop, of whether the server is stopping."""
FOLLOW_POLL = 0.25
"""Seconds between polls of a followed log file."""
LOG_RECHECK = 1.0
"""Seconds between asking the runtime, while following, whether the log file is still current."""
DRAIN_GRACE = 2.0
"""Seconds to keep forwarding output after the exec'd process exits (children may hold it)."""
CLOSE_WAIT = 2.0
"""Seconds to wait for the client's answer to our WebSocket close frame."""
STOP_GRACE = 3.0
"""Seconds `stop()` lets busy connections end by themselves before cutting them off."""
REAP_TIMEOUT = 5.0
LOG_CHUNK = 64 * 1024
READ_SIZE = 64 * 1024
STDIN_BUFFER_LIMIT = 1024 * 1024
"""Stop reading the client while this much stdin waits for the process to read it."""
MAX_MESSAGE = 8 * 1024 * 1024

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"", "0", "f", "F", "false", "FALSE", "False"})

T = TypeVar("T")


# --- the interface to the node agent ---------------------------------------------------------


@dataclass(frozen=True)
class ExecTarget:
    """What to run for `kubectl exec`: the agent has already wrapped the command (in nsenter...).

    The process gets exactly `env` (nothing is inherited) and starts in `cwd`.
    """

    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None


class ContainerRuntime(Protocol):
    """What the kubelet API needs from the node agent. Methods are called from many threads."""

    def log_file(self, namespace: str, pod: str, container: str, previous: bool) -> Path | None:
        """The container's log (stdout and stderr, raw lines), or None if there is no such
        container (with `previous`: no previous, terminated instance of it). The file may not
        exist yet: it reads as empty."""
        ...

    def exec_target(
        self, namespace: str, pod: str, container: str, command: list[str]
    ) -> ExecTarget | None:
        """How to run `command` in the container, or None if it is not running here."""
        ...


# --- errors and small helpers ----------------------------------------------------------------


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class _Stopping(Exception):
    """The server is stopping: start nothing new."""


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _bool(query: dict[str, list[str]], name: str) -> bool:
    """A boolean query parameter, as Go's strconv.ParseBool reads it; absent or empty is false."""
    value = _first(query, name)
    if value is None or value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise _HttpError(400, f"bad query parameter {name}={value!r}: want true or false")


def _int(query: dict[str, list[str]], name: str, minimum: int) -> int | None:
    value = _first(query, name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise _HttpError(400, f"bad query parameter {name}={value!r}: want an integer >= {minimum}")
    return number


def _valid_name(name: str) -> bool:
    """A path segment that can be an object name: not empty, no slash, nothing unprintable."""
    if not name or name in (".", "..") or "/" in name:
        return False
    return all(c.isprintable() for c in name)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process's group (it leads its own session), then the process itself."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            process.kill()


def _set_controlling_tty() -> None:
    """In the exec'd child, after setsid(): make the pseudo-terminal on fd 0 its terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


# --- metav1.Status objects for the error channel ---------------------------------------------


def _status_json(status: dict[str, Any]) -> bytes:
    return json.dumps(status, separators=(",", ":")).encode()


def _success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def _exit_status(code: int) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def _internal_error_status(message: str) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


# --- logs --------------------------------------------------------------------------------------


def _tail_offset(file: IO[bytes], lines: int) -> int:
    """The offset where the last `lines` lines of `file` start (a last line may lack its \\n)."""
    size = file.seek(0, os.SEEK_END)
    if lines == 0 or size == 0:
        return size
    file.seek(size - 1)
    wanted = lines + (1 if file.read(1) == b"\n" else 0)
    found = 0
    position = size
    while position > 0:
        step = min(LOG_CHUNK, position)
        position -= step
        file.seek(position)
        block = file.read(step)
        end = len(block)
        while (newline := block.rfind(b"\n", 0, end)) >= 0:
            found += 1
            if found == wanted:
                return position + newline + 1
            end = newline
    return 0


def _open_log(path: Path) -> IO[bytes] | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class _LogOptions:
    follow: bool
    previous: bool
    tail_lines: int | None
    limit_bytes: int | None

    @classmethod
    def parse(cls, query: dict[str, list[str]]) -> _LogOptions:
        """Validate every parameter the apiserver sends; `timestamps` (this node records no
        timestamps), `sinceSeconds` and `sinceTime` are accepted and ignored."""
        options = cls(
            follow=_bool(query, "follow"),
            previous=_bool(query, "previous"),
            tail_lines=_int(query, "tailLines", 0),
            limit_bytes=_int(query, "limitBytes", 1),
        )
        _bool(query, "timestamps")
        _int(query, "sinceSeconds", 1)
        stream = _first(query, "stream") or "All"
        if stream != "All":
            raise _HttpError(
                400,
                f"stream={stream!r} is not supported: this node keeps a container's stdout and "
                "stderr in one log, so only stream=All is",
            )
        return options


# --- exec ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ExecOptions:
    command: list[str]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def parse(cls, query: dict[str, list[str]]) -> _ExecOptions:
        """The apiserver names the streams `input`, `output` and `error` (api.ExecStdinParam...);
        `stdin`, `stdout` and `stderr` (the names of the pods/exec API) are accepted too. With
        `tty`, stderr is merged into stdout (the terminal), as the kubelet does."""
        command = query.get("command") or []
        if not command:
            raise _HttpError(400, "no command given (query parameter `command`, once per word)")
        stdin = _bool(query, "input") or _bool(query, "stdin")
        stdout = _bool(query, "output") or _bool(query, "stdout")
        stderr = _bool(query, "error") or _bool(query, "stderr")
        if not (stdin or stdout or stderr):
            raise _HttpError(400, "exec needs at least one of input, output and error (stdin...)")
        tty = _bool(query, "tty")
        return cls(command=command, stdin=stdin, stdout=stdout, stderr=stderr and not tty, tty=tty)


def _resizes(payload: bytes) -> Iterator[tuple[int, int]]:
    """(width, height) of each JSON TerminalSize in a resize-channel message."""
    decoder = json.JSONDecoder()
    text = payload.decode("utf-8", errors="replace")
    index = 0
    while index < len(text):
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return
        try:
            size, index = decoder.raw_decode(text, index)
        except ValueError:
            _log.debug("ignoring a malformed resize message %r", payload[:200])
            return
        if not isinstance(size, dict):
            continue
        width, height = size.get("Width"), size.get("Height")
        if isinstance(width, int) and isinstance(height, int) and min(width, height) >= 0:
            yield min(width, 0xFFFF), min(height, 0xFFFF)


class _ExecSession:
    """One `kubectl exec` over an upgraded connection, run by one thread that owns the socket.

    The process runs with the target's environment in its own session (and process group), on
    a pseudo-terminal with tty, else on pipes. The session ends when the process exits (after
    forwarding its remaining output, then the status on the error channel and a normal close),
    when the client goes away (the process group is killed), or when the server stops (likewise,
    with a "going away" close).
    """

    def __init__(
        self,
        owner: KubeletServer,
        sock: ssl.SSLSocket,
        protocol: str,
        options: _ExecOptions,
        target: ExecTarget,
    ) -> None:
        self.owner = owner
        self.sock = sock
        self.options = options
        self.target = target
        self.v5 = protocol == PROTOCOL_V5
        self.parser = FrameParser(expect_masked=True, max_message=MAX_MESSAGE)
        self.process: subprocess.Popen[bytes] | None = None
        self.fds: set[int] = set()
        self.outputs: dict[int, int | None] = {}
        """Output fd -> channel to forward it on (None: read and discard)."""
        self.stdin_fd: int | None = None
        self.stdin_buffer = bytearray()
        self.stdin_eof = False
        self.tty_master: int | None = None
        self.client_open = True
        self.close_sent = False

    # --- lifecycle -----------------------------------------------------------------------------

    def run(self) -> None:
        self.sock.settimeout(REQUEST_TIMEOUT)
        try:
            try:
                self._spawn()
            except _Stopping:
                self._close(CloseCode.GOING_AWAY, "the kubelet is stopping")
                self._await_close()
                return
            except (OSError, subprocess.SubprocessError) as error:
                argv0 = self.target.argv[0] if self.target.argv else ""
                reason = (error.strerror if isinstance(error, OSError) else None) or str(error)
                self._send_status(_internal_error_status(f"cannot run {argv0!r}: {reason}"))
                self._close(CloseCode.NORMAL)
                self._await_close()
                return
            first = STDOUT if self.options.stdout else STDERR if self.options.stderr else ERROR
            self._send(bytes([first]))  # tells the client the streams are set up
            code = self._pump()
            if code is None:
                return
            self._send_status(_success_status() if code == 0 else _exit_status(code))
            self._close(CloseCode.NORMAL)
            self._await_close()
        finally:
            self._cleanup()

    def _spawn(self) -> None:
        target = self.target
        if not target.argv:
            raise subprocess.SubprocessError("the runtime gave an empty command")
        with self.owner._lock:
            if self.owner.stopping:
                raise _Stopping
            if self.options.tty:
                master, slave = os.openpty()
                self.fds.add(master)
                try:
                    self.process = subprocess.Popen(
                        target.argv,
                        stdin=slave,
                        stdout=slave,
                        stderr=slave,
                        env=target.env,
                        cwd=target.cwd,
                        start_new_session=True,
                        preexec_fn=_set_controlling_tty,
                    )
                finally:
                    os.close(slave)
                os.set_blocking(master, False)
                self.tty_master = master
                self.outputs[master] = STDOUT if self.options.stdout else None
                if self.options.stdin:
                    self.stdin_fd = master
            else:
                self._spawn_on_pipes()
            assert self.process is not None
            self.owner._processes.add(self.process)

    def _spawn_on_pipes(self) -> None:
        options, target = self.options, self.target
        child_ends: list[int] = []

        def pipe(parent_reads: bool) -> tuple[int, int]:
            read_end, write_end = os.pipe()
            parent, child = (read_end, write_end) if parent_reads else (write_end, read_end)
            self.fds.add(parent)
            child_ends.append(child)
            os.set_blocking(parent, False)
            return parent, child

        stdin: int = subprocess.DEVNULL
        stdout: int = subprocess.DEVNULL
        stderr: int = subprocess.DEVNULL
        try:
            if options.stdin:
                self.stdin_fd, stdin = pipe(parent_reads=False)
            if options.stdout:
                parent, stdout = pipe(parent_reads=True)
                self.outputs[parent] = STDOUT
            if options.stderr:
                parent, stderr = pipe(parent_reads=True)
                self.outputs[parent] = STDERR
            self.process = subprocess.Popen(
                target.argv,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=target.env,
                cwd=target.cwd,
                start_new_session=True,
            )
        finally:
            for fd in child_ends:
                os.close(fd)

    def _cleanup(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            _kill_group(process)
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        if process is not None:
            try:
                process.wait(timeout=REAP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _log.warning("exec'd process %d did not die within %gs", process.pid, REAP_TIMEOUT)
                return  # stays registered: stop() tries again
            with self.owner._lock:
                self.owner._processes.discard(process)

    # --- the loop ------------------------------------------------------------------------------

    def _pump(self) -> int | None:
        """Move bytes until the process exits (its exit code) or the session is cut (None)."""
        process = self.process
        assert process is not None
        exit_code: int | None = None
        drain_until = 0.0
        while True:
            if not self.client_open:  # a send failed: the client is gone
                _kill_group(process)
                return None
            if self.owner.stopping:
                _kill_group(process)
                self._close(CloseCode.GOING_AWAY, "the kubelet is stopping")
                self._await_close()
                return None
            if exit_code is None and (returncode := process.poll()) is not None:
                exit_code = returncode if returncode >= 0 else 128 - returncode
                drain_until = time.monotonic() + DRAIN_GRACE
            if exit_code is not None and (not self.outputs or time.monotonic() >= drain_until):
                return exit_code
            self._flush_stdin()
            read_client = self.client_open and len(self.stdin_buffer) < STDIN_BUFFER_LIMIT
            pending = read_client and self.sock.pending() > 0
            readers: list[Any] = list(self.outputs)
            if read_client:
                readers.append(self.sock)
            writers = [self.stdin_fd] if self.stdin_buffer and self.stdin_fd is not None else []
            readable, _, _ = select.select(readers, writers, [], 0.0 if pending else POLL)
            if read_client and (pending or self.sock in readable) and not self._read_client():
                _kill_group(process)
                return None
            for fd in readable:
                if isinstance(fd, int):
                    self._read_output(fd)

    def _read_client(self) -> bool:
        """Read and handle what the client sent; False once it is gone."""
        try:
            data = self.sock.recv(READ_SIZE)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return True
        except OSError:
            data = b""
        if not data:
            self.client_open = False
            return False
        try:
            messages = self.parser.feed(data)
        except ProtocolError as error:
            _log.debug("exec client broke the WebSocket protocol: %s", error)
            self._close(error.code, str(error))
            self.client_open = False
            return False
        for message in messages:
            if message.opcode in (Opcode.BINARY, Opcode.TEXT):
                self._on_data(message.data)
            elif message.opcode is Opcode.PING:
                self._send_frame(encode_frame(Opcode.PONG, message.data))
            elif message.opcode is Opcode.CLOSE:
                code, _ = parse_close(message.data)
                self._close(CloseCode.NORMAL if code is None else code)
                self.client_open = False
                return False
        return True

    def _on_data(self, data: bytes) -> None:
        if not data:
            return
        channel, payload = data[0], data[1:]
        if channel == CLOSE and self.v5:
            if payload == bytes([STDIN]):
                self.stdin_eof = True
        elif channel == STDIN:
            if self.stdin_fd is not None and not self.stdin_eof:
                self.stdin_buffer += payload
        elif channel == RESIZE:
            self._resize(payload)

    def _resize(self, payload: bytes) -> None:
        master = self.tty_master
        if master is None:
            return
        for width, height in _resizes(payload):
            with contextlib.suppress(OSError):
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def _flush_stdin(self) -> None:
        fd = self.stdin_fd
        if fd is None:
            return
        while self.stdin_buffer:
            try:
                written = os.write(fd, self.stdin_buffer)
            except BlockingIOError:
                return
            except OSError:  # the process closed its stdin or exited
                self.stdin_buffer.clear()
                self._end_stdin()
                return
            del self.stdin_buffer[:written]
        if self.stdin_eof:
            self._end_stdin()

    def _end_stdin(self) -> None:
        """The client closed stdin: close the pipe; on a terminal, type the EOF character."""
        fd = self.stdin_fd
        self.stdin_fd = None
        if fd is None:
            return
        if fd == self.tty_master:
            with contextlib.suppress(OSError, termios.error):
                eof = termios.tcgetattr(fd)[6][termios.VEOF]
                os.write(fd, eof if isinstance(eof, bytes) else bytes([eof]))
            return
        self.fds.discard(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    def _read_output(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: every process closed the terminal
            data = b""
        if not data:
            del self.outputs[fd]
            if fd != self.tty_master:
                self.fds.discard(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)
            return
        channel = self.outputs[fd]
        if channel is not None:
            self._send(bytes([channel]) + data)

    # --- sending -------------------------------------------------------------------------------

    def _send(self, message: bytes) -> None:
        self._send_frame(encode_frame(Opcode.BINARY, message))

    def _send_frame(self, frame: bytes) -> None:
        if self.close_sent:
            return
        try:
            self.sock.sendall(frame)
        except OSError:
            self.client_open = False
            self.close_sent = True  # nothing more can be sent

    def _send_status(self, status: dict[str, Any]) -> None:
        self._send(bytes([ERROR]) + _status_json(status))

    def _close(self, code: int, reason: str = "") -> None:
        self._send_frame(encode_frame(Opcode.CLOSE, close_payload(code, reason)))
        self.close_sent = True

    def _await_close(self) -> None:
        """After our close frame, read (and drop) until the client's close frame, or give up."""
        deadline = time.monotonic() + CLOSE_WAIT
        while self.client_open:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.sock.pending() == 0:
                readable, _, _ = select.select([self.sock], [], [], min(remaining, POLL))
                if not readable:
                    continue
            if not self._read_client():
                return


# --- HTTP --------------------------------------------------------------------------------------


class _Connection:
    """One client connection; `busy` while a request is being served."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.busy = False

    def cut(self) -> None:
        """Shut the socket down under whatever thread is using it (unblocks its reads/writes)."""
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "redkube-testbed-kubelet"
    sys_version = ""
    rbufsize = 0  # read no further than the request: an upgraded connection reads its own frames
    timeout = REQUEST_TIMEOUT
    disable_nagle_algorithm = True

    def __init__(
        self,
        request: Any,
        client_address: Any,
        server: socketserver.BaseServer,
        connection: _Connection | None = None,
    ) -> None:
        self._connection = connection
        self._responded = False
        super().__init__(request, client_address, server)  # serves the connection

    @property
    def owner(self) -> KubeletServer:
        return cast(_HTTPServer, self.server).owner

    @property
    def tls(self) -> ssl.SSLSocket:
        return cast(ssl.SSLSocket, self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)

    # --- responses -----------------------------------------------------------------------------

    def _reply(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        body = text.encode("utf-8", errors="replace")
        self._responded = True
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Also for http.server's own errors (bad request line, unknown method): plain text."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._reply(code, message or explain or phrase)

    # --- routing -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self.close_connection = True  # any request body is left unread
        self._dispatch()

    def _dispatch(self) -> None:
        self._responded = False
        connection = self._connection
        if connection is not None:
            connection.busy = True
        try:
            self._route()
        except _HttpError as error:
            if self._responded:
                self.close_connection = True
            else:
                self._reply(error.status, error.message, error.headers)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True  # the client went away
        except Exception:
            _log.exception("kubelet API request %r failed", self.requestline)
            self.close_connection = True
            if not self._responded:
                with contextlib.suppress(OSError):
                    self._reply(500, "internal error in the test-bed kubelet API (see its log)")
        finally:
            if connection is not None:
                connection.busy = False

    def _route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        segments = [urllib.parse.unquote(s) for s in url.path.split("/")[1:]]
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        endpoint = segments[0] if segments else ""
        if url.path == "/healthz":
            self._only("GET")
            self._reply(200, "ok")
        elif endpoint == "containerLogs":
            self._only("GET")
            namespace, pod, container = self._names(url.path, segments)
            self._logs(namespace, pod, container, query)
        elif endpoint == "exec":
            self._only("GET", "POST")
            namespace, pod, container = self._names(url.path, segments)
            self._exec(namespace, pod, container, query)
        else:
            raise _HttpError(
                404,
                f"no such endpoint: {url.path} "
                "(this kubelet serves /healthz, /containerLogs/... and /exec/...)",
            )

    def _only(self, *methods: str) -> None:
        if self.command not in methods:
            allowed = ", ".join(methods)
            raise _HttpError(
                405, f"{self.command} is not allowed here (only {allowed})", (("Allow", allowed),)
            )

    @staticmethod
    def _names(path: str, segments: list[str]) -> tuple[str, str, str]:
        if len(segments) != 4 or not all(_valid_name(s) for s in segments[1:]):
            raise _HttpError(
                400, f"bad path {path!r}: want /{segments[0]}/{{namespace}}/{{pod}}/{{container}}"
            )
        return segments[1], segments[2], segments[3]

    def _runtime(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except Exception as error:
            _log.exception("the container runtime failed")
            raise _HttpError(500, f"the container runtime failed: {error}") from error

    # --- /containerLogs ------------------------------------------------------------------------

    def _logs(self, namespace: str, pod: str, container: str, query: dict[str, list[str]]) -> None:
        options = _LogOptions.parse(query)
        runtime = self.owner.runtime

        def lookup() -> Path | None:
            return runtime.log_file(namespace, pod, container, options.previous)

        path = self._runtime(lookup)
        if path is None:
            if options.previous:
                raise _HttpError(
                    404,
                    f'previous terminated container "{container}" in pod "{pod}" '
                    f'(namespace "{namespace}") not found on this node',
                )
            raise _HttpError(
                404,
                f'container "{container}" in pod "{pod}" (namespace "{namespace}") '
                "not found on this node",
            )
        file = _open_log(path)
        try:
            if file is not None and options.tail_lines is not None:
                file.seek(_tail_offset(file, options.tail_lines))
            self._stream_log(path, file, options, lookup)
        finally:
            if file is not None:
                file.close()

    def _stream_log(
        self,
        path: Path,
        file: IO[bytes] | None,
        options: _LogOptions,
        lookup: Callable[[], Path | None],
    ) -> None:
        """Send the log from the file's position; with follow, poll the file for more.

        Following ends when the client goes away, the server stops, `limitBytes` is reached, or
        the runtime no longer names this file for the container (it is gone or was restarted).
        A truncated file is read again from its start; a replaced one (rotated), from the new
        file's start.
        """
        chunked = self.request_version != "HTTP/1.0"
        self._responded = True
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        if options.follow:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

        def send(data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

        remaining = options.limit_bytes
        next_check = time.monotonic() + LOG_RECHECK
        while remaining is None or remaining > 0:
            size = LOG_CHUNK if remaining is None else min(LOG_CHUNK, remaining)
            data = file.read(size) if file is not None else b""
            if data:
                send(data)
                if remaining is not None:
                    remaining -= len(data)
                continue
            if not options.follow or self.owner.stopping or self._client_gone(FOLLOW_POLL):
                break
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + LOG_RECHECK
                try:
                    current = lookup()
                except Exception:
                    _log.exception("the container runtime failed")
                    break
                if current != path:
                    break
            file = self._reopen_if_replaced(path, file)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def _reopen_if_replaced(path: Path, file: IO[bytes] | None) -> IO[bytes] | None:
        try:
            now = path.stat()
        except OSError:
            return file  # gone: keep reading what we have open
        if file is None:
            return _open_log(path)
        opened = os.fstat(file.fileno())
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            file.close()
            return _open_log(path)
        if now.st_size < file.tell():
            file.seek(0)
        return file

    def _client_gone(self, wait: float) -> bool:
        """Wait up to `wait` seconds for the client to hang up; whether it did."""
        sock = self.tls
        if sock.pending() == 0:
            readable, _, _ = select.select([sock], [], [], wait)
            if not readable:
                return False
        before = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            return not sock.recv(READ_SIZE)  # a client sends nothing more after its request
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(before)

    # --- /exec ---------------------------------------------------------------------------------

    def _exec(self, namespace: str, pod: str, container: str, query: dict[str, list[str]]) -> None:
        options = _ExecOptions.parse(query)
        runtime = self.owner.runtime
        target = self._runtime(
            lambda: runtime.exec_target(namespace, pod, container, list(options.command))
        )
        if target is None:
            raise _HttpError(
                404,
                f'container "{container}" in pod "{pod}" (namespace "{namespace}") '
                "is not running on this node",
            )
        key, protocol = self._websocket_request()
        self.close_connection = True
        self._responded = True
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        _ExecSession(self.owner, self.tls, protocol, options, target).run()

    def _websocket_request(self) -> tuple[str, str]:
        """Check the upgrade request (RFC 6455 4.2.1); its key and the chosen subprotocol."""
        upgrade = self.headers.get("Upgrade")
        supported = " or ".join(SUPPORTED_PROTOCOLS)
        upgrades = [t.lower() for t in header_tokens(upgrade)]
        connection = [t.lower() for t in header_tokens(self.headers.get("Connection"))]
        if "websocket" not in upgrades or "upgrade" not in connection:
            found = f"an upgrade to {upgrade!r}" if upgrade else "a plain request"
            raise _HttpError(
                400,
                f"exec needs a WebSocket upgrade speaking {supported}; got {found} "
                "(this kubelet does not speak SPDY)",
            )
        if self.headers.get("Sec-WebSocket-Version", "").strip() != "13":
            raise _HttpError(
                426, "unsupported WebSocket version: want 13", (("Sec-WebSocket-Version", "13"),)
            )
        key = self.headers.get("Sec-WebSocket-Key", "")
        if not valid_key(key):
            raise _HttpError(400, "missing or malformed Sec-WebSocket-Key")
        offered = [
            token
            for value in self.headers.get_all("Sec-WebSocket-Protocol") or []
            for token in header_tokens(value)
        ]
        protocol = select_subprotocol(offered, SUPPORTED_PROTOCOLS)
        if protocol is None:
            raise _HttpError(
                400,
                f"none of the offered WebSocket subprotocols {offered} is supported; "
                f"this kubelet speaks {supported}",
            )
        return key.strip(), protocol


class _HTTPServer(ThreadingHTTPServer):
    """TLS is set up per connection, in the connection's own thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], owner: KubeletServer) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"kubelet-api-{client_address[1]}",
            daemon=True,
        )
        self.owner._track(thread)
        thread.start()

    def finish_request(self, request: Any, client_address: Any) -> None:
        raw = cast(socket.socket, request)
        raw.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.owner._context.wrap_socket(raw, server_side=True)
        except (OSError, ValueError) as error:
            _log.debug("TLS handshake with %s failed: %s", client_address, error)
            return
        connection = _Connection(tls)
        try:
            with self.owner._connection(connection):
                _Handler(tls, client_address, self, connection)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client hung up mid-request, or the like
            _log.debug("kubelet API connection from %s: %s", client_address, error)
        else:
            _log.exception("kubelet API connection from %s failed", client_address)


# --- the server --------------------------------------------------------------------------------


class KubeletServer:
    """The kubelet API of one node, served over HTTPS by background threads.

    `GET /containerLogs/{namespace}/{pod}/{container}` takes the apiserver's query parameters:
    `follow` (stream new lines until the client hangs up, the server stops, or the runtime stops
    naming this file), `tailLines`, `limitBytes`, `previous`; `timestamps`, `sinceSeconds` and
    `sinceTime` are accepted and ignored (the log has no timestamps), and `stream` must be
    `All` (stdout and stderr share one file).

    `/exec/...` takes `command` (repeated), `input`, `output`, `error` and `tty` (1 or true), as
    the apiserver sends them (`stdin`, `stdout` and `stderr` work too).
    Port 0 picks a free port: read `port` after `start()`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        runtime: ContainerRuntime,
        cert: Path,
        key: Path,
        client_ca: Path,
    ) -> None:
        self.host = host
        self.port = port
        self.runtime = runtime
        self.cert = cert
        self.key = key
        self.client_ca = client_ca
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._processes: set[subprocess.Popen[bytes]] = set()
        self._connections: set[_Connection] = set()
        self._threads: set[threading.Thread] = set()
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._context = self._tls_context()

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert), str(self.key))
        context.load_verify_locations(cafile=str(self.client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
        context.set_alpn_protocols(["http/1.1"])
        return context

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def __enter__(self) -> KubeletServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen and serve in background threads; returns once the socket is listening."""
        if self._httpd is not None or self.stopping:
            raise RuntimeError("this kubelet API server was already started")
        httpd = self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = httpd.server_port
        self._serve_thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": POLL},
            name=f"kubelet-api-serve-{self.port}",
            daemon=True,
        )
        self._serve_thread.start()

    def stop(self) -> None:
        """Stop listening, end log streams and exec sessions, and kill every exec'd process.

        Busy connections get `STOP_GRACE` seconds to end (exec clients get a "going away"
        close), then they are cut. Returns once the exec'd processes are reaped.
        """
        with self._lock:
            if self.stopping:
                return
            self._stopping.set()
            processes = list(self._processes)
            idle = [c for c in self._connections if not c.busy]
        httpd, serve_thread = self._httpd, self._serve_thread
        if httpd is not None:
            if serve_thread is not None:
                httpd.shutdown()
                serve_thread.join(timeout=REAP_TIMEOUT)
            httpd.server_close()
        for process in processes:
            _kill_group(process)
        for connection in idle:
            connection.cut()
        deadline = time.monotonic() + STOP_GRACE
        for thread in self._live_threads():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            remaining = list(self._connections)
        for connection in remaining:
            connection.cut()
        for thread in self._live_threads():
            thread.join(timeout=REAP_TIMEOUT)
        with self._lock:
            leftovers = list(self._processes)
            self._processes.clear()
        for process in leftovers:
            _kill_group(process)
            try:
                process.wait(timeout=REAP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _log.warning("exec'd process %d survived SIGKILL", process.pid)

    # --- bookkeeping for the request threads ---------------------------------------------------

    def _live_threads(self) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._threads if t.is_alive()]

    def _track(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)

    @contextlib.contextmanager
    def _connection(self, connection: _Connection) -> Iterator[None]:
        with self._lock:
            if self.stopping:
                connection.cut()
            self._connections.add(connection)
        try:
            yield
        finally:
            with self._lock:
                self._connections.discard(connection)


__all__ = ["ContainerRuntime", "ExecTarget", "KubeletServer"]
