"""A loopback HTTP proxy in front of S3 that fails chosen requests on purpose.

Role: tests of kubegrid's storage retries give the proxy's `url` to the code
under test instead of moto's endpoint, then `inject()` faults:

* ``slowdown``: 503 with the S3 error code SlowDown (throttling);
* ``unavailable``: 503 ServiceUnavailable (a brown-out, not throttling);
* ``internal``: 500 InternalError;
* ``denied``: 403 AccessDenied, as S3 answers a request the policy refuses;
* ``timeout``: 400 RequestTimeout (S3 gave up waiting for the request body;
  a 4xx that is worth a retry);
* ``reset``: the TCP connection is reset without any response;
* ``cut``: the upstream's status, headers and half its body are sent, then
  the connection is reset (a download broken off midway);
* ``garble``: the upstream's answer with one byte of its body changed, so
  the body no longer matches the checksum header S3 sent with it;
* ``delay``: the request waits `delay` seconds, then passes through.

Each fault hits the next `count` requests matching an optional method and a
path regex (path-style: ``/bucket/key``), then everything passes through.
Every request is recorded in `log`, with the time it arrived, for assertions.
"""

from __future__ import annotations

import dataclasses
import http.client
import http.server
import re
import socket
import struct
import threading
import time
import urllib.parse
from typing import Literal

FaultKind = Literal[
    "slowdown",
    "unavailable",
    "internal",
    "denied",
    "timeout",
    "reset",
    "cut",
    "garble",
    "delay",
]

# Hop-by-hop headers are the proxy's business, never forwarded (RFC 9110 §7.6.1).
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}

# Status, code and message as S3 itself sends them.
_ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "unavailable": (
        503,
        "ServiceUnavailable",
        "Service is unable to handle request.",
    ),
    "denied": (403, "AccessDenied", "Access Denied"),
    "timeout": (
        400,
        "RequestTimeout",
        "Your socket connection to the server was not read from or written to "
        "within the timeout period. Idle connections will be closed.",
    ),
    "internal": (
        500,
        "InternalError",
        "We encountered an internal error. Please try again.",
    ),
}


@dataclasses.dataclass
class Fault:
    """A rule: fail the next `remaining` requests that match."""

    kind: FaultKind
    remaining: int
    method: str | None = None
    path: re.Pattern[str] | None = None
    delay: float = 0.0
    injected: int = 0  # how many requests this rule has hit so far

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method == method)
            and (self.path is None or self.path.search(path) is not None)
        )


@dataclasses.dataclass(frozen=True)
class Logged:
    """One request as the proxy saw it; `at` is `time.monotonic()` on arrival."""

    method: str
    path: str
    fault: FaultKind | None
    at: float


class FaultyS3Proxy:
    """The proxy server; use as a context manager or `start()`/`stop()`."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> FaultyS3Proxy:
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="faulty-s3", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultyS3Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(
        self,
        count: int = 1,
        kind: FaultKind = "slowdown",
        *,
        method: str | None = None,
        path: str | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """Fail the next `count` requests matching `method` and the `path` regex."""
        fault = Fault(kind, count, method, re.compile(path) if path else None, delay)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    @property
    def injected(self) -> int:
        """How many requests got a fault, over all rules."""
        return sum(1 for entry in self.log if entry.fault is not None)

    def requests(self, path: str, method: str | None = None) -> list[Logged]:
        """The logged requests whose path matches the regex `path`, in order."""
        pattern = re.compile(path)
        return [
            entry
            for entry in list(self.log)
            if pattern.search(entry.path) and method in (None, entry.method)
        ]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    fault.injected += 1
                    return fault
        return None


class _Handler(http.server.BaseHTTPRequestHandler):
    proxy: FaultyS3Proxy
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

    def log_message(self, format: str, *args: object) -> None:
        pass  # the proxy's own log is `FaultyS3Proxy.log`

    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    def _serve(self) -> None:
        arrived = time.monotonic()
        body = self._read_body()
        fault = self.proxy._take_fault(self.command, self.path)
        self.proxy.log.append(
            Logged(self.command, self.path, fault.kind if fault else None, arrived)
        )
        if fault is None or fault.kind == "delay":
            time.sleep(fault.delay if fault else 0)
            self._forward(body)
        elif fault.kind in ("cut", "garble"):
            self._forward(body, alter=fault.kind)
        elif fault.kind == "reset":
            self._reset()
        else:
            self._send_error(*_ERRORS[fault.kind])

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk

    def _forward(self, body: bytes, *, alter: FaultKind | None = None) -> None:
        upstream = http.client.HTTPConnection(*self.proxy.upstream, timeout=30)
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
        }
        headers["Content-Length"] = str(len(body))
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
        finally:
            upstream.close()
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        # HEAD answers carry the length of the body they do not send.
        length = (
            response.getheader("Content-Length") if self.command == "HEAD" else None
        )
        self.send_header("Content-Length", length or str(len(payload)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if alter == "garble" and payload:
            middle = len(payload) // 2
            payload = (
                payload[:middle] + bytes([payload[middle] ^ 1]) + payload[middle + 1 :]
            )
        if alter == "cut":
            # The client was promised the whole length; half of it, then RST.
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self._reset()
            return
        self.wfile.write(payload)

    def _send_error(self, status: int, code: str, message: str) -> None:
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<Resource>{self.path}</Resource><RequestId>faulty-s3</RequestId></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(xml)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(xml)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST, not FIN.
        self.connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.close_connection = True
        self.connection.close()
