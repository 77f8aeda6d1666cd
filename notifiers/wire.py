"""HTTP/1.1 POSTs over kept-alive connections to one checked address.

The webhook plugin (:mod:`notifiers.http`) sends one small request and
reads one small answer per delivery; a general client (its retries,
redirects, header containers, response wrappers) costs several times
the request itself.  This module does only what a webhook needs:

* :class:`Pool` keeps the idle connections to one address, port and TLS
  setting (last used first); a connection is reused only when the
  server did not close it (nothing readable while it was idle), and it
  is dropped after any error, a ``Connection: close``, or an answer whose
  body was not read to its end.
* The request goes out in one ``sendall`` (head and body).  Header
  values and the request target are refused when they hold a line break
  or a control character (no header injection through a URL).
* The answer: the status line (1xx answers skipped), the headers, and at
  most ``max_body`` bytes of the body, sized by ``Content-Length``, by
  chunks, or by the end of the connection.  Redirects are answers like
  any other: never followed.
* TLS: the certificate is verified against the CA bundle given, and its
  name matched to the name given (the URL's host) while the connection
  goes to the address; the same name is sent as SNI.

Errors: :class:`ConnectError` (no connection; another address may be
tried), :class:`Timeout` (connect or read), :class:`ProtocolError` (the
server closed or answered something that is not HTTP/1.x), any other
:class:`OSError` (a TLS or socket error).
"""

from __future__ import annotations

import dataclasses
import re
import select
import socket
import ssl
import threading
from typing import BinaryIO

from urllib3.util import ssl_match_hostname

#: Longest status or header line read.
MAX_LINE = 65536
#: Most header lines read in one answer.
MAX_HEADERS = 100

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
_TARGET_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_NAMES_FORBIDDEN = re.compile(r"[\x00-\x20\x7f:]")


class ConnectError(OSError):
    """No connection could be opened to the address."""


class Timeout(TimeoutError):
    """The connection or the answer took longer than its timeout."""


class ProtocolError(OSError):
    """The server closed the connection or did not answer HTTP/1.x."""


@dataclasses.dataclass
class Response:
    """An answer: status, headers (names in lower case), body start.

    :ivar body: at most ``max_body`` bytes of the body.
    :ivar body_error: why the body could not be read (the status and
        headers were).
    """

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes = b""
    body_error: str | None = None


class _Connection:
    __slots__ = ("reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: BinaryIO = sock.makefile("rb")

    def dropped(self) -> bool:
        """Whether the server closed (or wrote to) the idle connection."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()


def check_header(name: str, value: str) -> None:
    """Refuse a header that would break the request's framing.

    :raises ValueError: naming the header.
    """
    if not name or _NAMES_FORBIDDEN.search(name):
        raise ValueError(f"Invalid header name {name!r}")
    if _FORBIDDEN.search(value.replace("\t", " ")):
        raise ValueError(f"Invalid value of header {name!r}")


def request_head(target: str, headers: dict[str, str], length: int) -> bytes:
    """The head of a POST of *length* bytes to *target* with *headers*.

    :raises ValueError: the target or a header is not sendable.
    """
    if not target or _TARGET_FORBIDDEN.search(target):
        raise ValueError(f"Invalid request target {target!r}")
    # One look over every name and every value; the culprit is named by
    # a second look, header by header.
    if _NAMES_FORBIDDEN.search("".join(headers)) or _FORBIDDEN.search(
        "".join(headers.values()).replace("\t", " ")
    ):
        for name, value in headers.items():
            check_header(name, value)
    lines = [f"POST {target} HTTP/1.1"]
    for name, value in headers.items():
        if not name:
            raise ValueError("Invalid header name ''")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {length}")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"Header not encodable as Latin-1: {exc}") from exc


class Pool:
    """The connections to one address, port and TLS setting.

    :param context: the TLS context (None: plain TCP).
    :param server_name: the name sent as SNI and matched against the
        certificate (None: no SNI; the address is matched).
    :param verify: match the certificate's name (the context verifies
        the chain).
    :param maxsize: idle connections kept.
    """

    def __init__(
        self,
        address: str,
        port: int,
        *,
        connect_timeout: float,
        read_timeout: float,
        context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        verify: bool = False,
        maxsize: int = 10,
        max_body: int = 1024,
    ) -> None:
        self.address = address
        self.port = port
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.context = context
        self.server_name = server_name
        self.verify = verify
        self.maxsize = maxsize
        self.max_body = max_body
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        #: Connections opened so far.
        self.num_connections = 0
        #: Requests sent so far.
        self.num_requests = 0

    def post(self, head: bytes, body: bytes) -> Response:
        """Send *head* and *body*; return the answer.

        :raises ConnectError: no connection (nothing was sent).
        :raises Timeout: connect or read timeout.
        :raises OSError: the request or the answer failed.
        """
        conn = self._take()
        try:
            conn.sock.sendall(head + body)
            response, keep = self._read(conn.reader)
        except TimeoutError as exc:
            conn.close()
            raise Timeout(f"read timed out ({self.read_timeout}s)") from exc
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self.num_requests += 1
            kept = keep and len(self._idle) < self.maxsize
            if kept:
                self._idle.append(conn)
        if not kept:
            conn.close()
        return response

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- connections ------------------------------------------------------

    def _take(self) -> _Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect()
            if not conn.dropped():
                return conn
            conn.close()

    def _connect(self) -> _Connection:
        try:
            sock = socket.create_connection(
                (self.address, self.port), timeout=self.connect_timeout
            )
        except TimeoutError as exc:
            raise Timeout(
                f"connection to {self.address} port {self.port} timed out "
                f"({self.connect_timeout}s)"
            ) from exc
        except OSError as exc:
            raise ConnectError(
                f"cannot connect to {self.address} port {self.port}: {exc}"
            ) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                sock = self.context.wrap_socket(
                    sock, server_hostname=self.server_name
                )
                if self.verify:
                    cert = sock.getpeercert()
                    ssl_match_hostname.match_hostname(
                        cert,  # type: ignore[arg-type]
                        self.server_name or self.address,
                    )
            sock.settimeout(self.read_timeout)
        except TimeoutError as exc:
            sock.close()
            raise Timeout(
                f"TLS handshake with {self.address} port {self.port} timed "
                f"out ({self.connect_timeout}s)"
            ) from exc
        except ssl_match_hostname.CertificateError as exc:
            sock.close()
            raise ssl.SSLCertVerificationError(str(exc)) from exc
        except BaseException:
            sock.close()
            raise
        with self._lock:
            self.num_connections += 1
        return _Connection(sock)

    # -- answers ----------------------------------------------------------

    def _read(self, reader: BinaryIO) -> tuple[Response, bool]:
        """Read one answer; return it and whether the connection is kept."""
        while True:
            version, status, reason = _status_line(reader)
            headers = _headers(reader)
            if 100 <= status < 200 and status != 101:
                continue
            break
        response = Response(status, reason, headers)
        tokens = {
            t.strip().lower() for t in headers.get("connection", "").split(",")
        }
        keep = "close" not in tokens and (
            version != "HTTP/1.0" or "keep-alive" in tokens
        )
        try:
            response.body, complete = self._body(reader, status, headers)
        except (OSError, ValueError) as exc:
            response.body_error = str(exc) or type(exc).__name__
            return response, False
        return response, keep and complete

    def _body(
        self, reader: BinaryIO, status: int, headers: dict[str, str]
    ) -> tuple[bytes, bool]:
        """The start of the body, and whether it was read to its end."""
        limit = self.max_body
        if status in (204, 304) or 100 <= status < 200:
            return b"", True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return _chunked(reader, limit)
        length = headers.get("content-length")
        if length is None:
            # Delimited by the end of the connection.
            return reader.read(limit) or b"", False
        try:
            size = int(length)
        except ValueError:
            raise ProtocolError(f"bad Content-Length {length!r}") from None
        if size < 0:
            raise ProtocolError(f"bad Content-Length {length!r}")
        want = min(size, limit)
        data = reader.read(want) if want else b""
        if len(data) < want:
            raise ProtocolError(
                f"connection closed after {len(data)} of {size} bytes"
            )
        return data, size <= limit


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError("answer line too long")
    return line


def _status_line(reader: BinaryIO) -> tuple[str, int, str]:
    line = _line(reader)
    if not line:
        raise ProtocolError("connection closed without an answer")
    parts = line.decode("latin-1").rstrip("\r\n").split(None, 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0"):
        raise ProtocolError(f"bad status line {line[:80]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise ProtocolError(f"bad status line {line[:80]!r}") from None
    if not 100 <= status <= 999:
        raise ProtocolError(f"bad status line {line[:80]!r}")
    return parts[0], status, parts[2] if len(parts) > 2 else ""


def _headers(reader: BinaryIO) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = ""
    for _ in range(MAX_HEADERS + 1):
        line = _line(reader)
        if not line:
            raise ProtocolError("connection closed in the answer's headers")
        if line in (b"\r\n", b"\n"):
            return headers
        text = line.decode("latin-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and last:
            # A folded continuation of the previous header.
            headers[last] += " " + text.strip()
            continue
        name, sep, value = text.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        last = name.strip().lower()
        value = value.strip()
        previous = headers.get(last)
        headers[last] = value if previous is None else f"{previous}, {value}"
    raise ProtocolError(f"more than {MAX_HEADERS} headers")


def _chunked(reader: BinaryIO, limit: int) -> tuple[bytes, bool]:
    """Read a chunked body: at most *limit* bytes of it."""
    parts: list[bytes] = []
    kept = 0
    while True:
        line = _line(reader)
        if not line:
            raise ProtocolError("connection closed in a chunked body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {line[:80]!r}") from None
        if size == 0:
            while _line(reader) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts), True
        if kept + size > limit:
            want = limit - kept
            parts.append(reader.read(want) if want else b"")
            return b"".join(parts), False
        chunk = reader.read(size)
        if len(chunk) < size:
            raise ProtocolError("connection closed in a chunk")
        parts.append(chunk)
        kept += size
        _line(reader)  # the CRLF after the chunk
