"""An HTTP/2-only LLM upstream (TLS with ALPN `h2`, on loopback), built on the h2 library that
mitmproxy itself ships. Each stream is answered in a thread of its own, so streams of one
connection interleave as a real upstream's do.

How a stream is answered depends on its path: `/reset/...` sends the headers and the first half of
the body, then resets the stream (RST_STREAM, INTERNAL_ERROR); anything else sends `body` in
`pieces` pieces, `delay` seconds apart, and ends the stream.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived, RequestReceived, StreamEnded
from mitmproxy import certs


def private_ca(tmp: Path, name: str) -> tuple[Path, ssl.SSLContext]:
    """A private CA of the upstream's (not mitmproxy's) in `tmp`, and a server context for `name`
    (a host name or an IP address) signed by it: the CA file is what the proxy must be told to trust."""
    store = certs.CertStore.from_store(tmp, "upstream", 2048)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        san = x509.DNSName(name)
    entry = store.get_cert(name, [san])
    key = entry.privatekey.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp / "server.pem").write_bytes(entry.cert.to_pem() + key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "server.pem")
    return tmp / "upstream-ca-cert.pem", ctx


class H2Upstream:
    def __init__(self, tls: ssl.SSLContext, body: bytes, content_type: str = "text/event-stream") -> None:
        tls.set_alpn_protocols(["h2"])
        self.tls = tls
        self.body = body
        self.content_type = content_type
        self.pieces = 8
        self.delay = 0.05
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests: list[dict[str, Any]] = []
        """Each stream's request headers, and the connection it came on (to see multiplexing)."""
        self.resets: list[int] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()

    def _accept(self) -> None:
        n = 0
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            n += 1
            threading.Thread(target=self._serve, args=(raw, n), daemon=True).start()

    def _serve(self, raw: socket.socket, conn_no: int) -> None:
        try:
            sock = self.tls.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            return
        conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        lock = threading.Lock()
        with lock:
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
        headers: dict[int, dict[str, str]] = {}
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with lock:
                    events = conn.receive_data(data)
                    for ev in events:
                        if isinstance(ev, RequestReceived):
                            headers[ev.stream_id] = dict(ev.headers)  # type: ignore[arg-type]
                        elif isinstance(ev, DataReceived):
                            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        elif isinstance(ev, StreamEnded):
                            self.requests.append({**headers[ev.stream_id], "connection": conn_no})
                            threading.Thread(
                                target=self._answer,
                                args=(sock, conn, lock, ev.stream_id, headers[ev.stream_id]),
                            ).start()
                    sock.sendall(conn.data_to_send())

    def _answer(
        self, sock: ssl.SSLSocket, conn: H2Connection, lock: threading.Lock, sid: int, req: dict[str, str]
    ) -> None:
        body = self.body
        size = max(1, -(-len(body) // self.pieces))
        pieces = [body[i : i + size] for i in range(0, len(body), size)]
        reset = req[":path"].startswith("/reset/")
        if reset:
            pieces = [body[: len(body) // 2]]
        try:
            with lock:
                conn.send_headers(sid, [(":status", "200"), ("content-type", self.content_type)])
                sock.sendall(conn.data_to_send())
            for i, p in enumerate(pieces):
                time.sleep(self.delay)
                with lock:
                    conn.send_data(sid, p, end_stream=not reset and i == len(pieces) - 1)
                    sock.sendall(conn.data_to_send())
            if reset:
                time.sleep(self.delay)
                with lock:
                    conn.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
                    sock.sendall(conn.data_to_send())
                    self.resets.append(sid)
        except OSError:
            pass
