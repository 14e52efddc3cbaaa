"""Slack's Socket Mode end: a WebSocket server that sends envelopes and collects the app's acks.

Per Slack's public docs (api.slack.com/apis/socket-mode):

* ``apps.connections.open``, called with the app-level token (``xapp-...``),
  answers a WebSocket URL (``SlackStandin`` serves it from this stand-in).
* Once connected, Slack sends ``{"type": "hello", ...}``, then one envelope per
  event: ``{"envelope_id", "type": "slash_commands" | "interactive" | ...,
  "accepts_response_payload", "payload"}``. A slash command's payload has the
  fields of the HTTP form; an interaction's is the JSON object itself.
* The app acknowledges each envelope with ``{"envelope_id", "payload"?}``
  within 3 seconds; a slash command's ``payload`` is what the user sees.
* Pings get pongs (RFC 6455); frames from the client are masked, ours are not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import struct
import threading
from typing import Any

JsonDict = dict[str, Any]
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class SocketModeStandin:
    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._cond = threading.Condition()
        self._connections: list[socket.socket] = []
        self._acks: dict[str, JsonDict] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name="socket-mode-standin")
        self._thread.start()

    def url(self) -> str:
        """What apps.connections.open answers (Slack's is wss://wss-primary.slack.com/link/?ticket=...)."""
        return f"ws://127.0.0.1:{self._server.getsockname()[1]}/link/?ticket={secrets.token_hex(8)}&app_id=A0VMBOT"

    def stop(self) -> None:
        with self._cond:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._server.close()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._connections), timeout=timeout)

    def send(self, kind: str, payload: JsonDict) -> str:
        """Deliver one envelope to the newest connection; returns its envelope_id."""
        envelope_id = secrets.token_hex(8)
        envelope = {"envelope_id": envelope_id, "type": kind, "accepts_response_payload": True, "payload": payload}
        with self._cond:
            connection = self._connections[-1]
        _send_frame(connection, TEXT, json.dumps(envelope).encode())
        return envelope_id

    def ack(self, envelope_id: str, timeout: float = 3.0) -> JsonDict | None:
        """The app's acknowledgement of an envelope, if it came within ``timeout`` (Slack waits 3 s)."""
        with self._cond:
            self._cond.wait_for(lambda: envelope_id in self._acks, timeout=timeout)
            return self._acks.get(envelope_id)

    # ---- the server side -------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        try:
            if not _handshake(connection, reader):
                return
            with self._cond:
                if self._closed:
                    return
                self._connections.append(connection)
                self._cond.notify_all()
            _send_frame(connection, TEXT, json.dumps(
                {"type": "hello", "num_connections": len(self._connections), "connection_info": {"app_id": "A0VMBOT"}}
            ).encode())
            while (frame := _read_frame(reader)) is not None:
                opcode, data = frame
                if opcode == PING:
                    _send_frame(connection, PONG, data)
                elif opcode == CLOSE:
                    _send_frame(connection, CLOSE, data[:2])
                    return
                elif opcode == TEXT:
                    message = json.loads(data)
                    with self._cond:
                        self._acks[message["envelope_id"]] = message
                        self._cond.notify_all()
        except OSError:
            return
        finally:
            with self._cond:
                if connection in self._connections:
                    self._connections.remove(connection)
            connection.close()


def _handshake(connection: socket.socket, reader: Any) -> bool:
    request_line = reader.readline()
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    key = headers.get("sec-websocket-key")
    if not request_line.startswith(b"GET ") or headers.get("upgrade", "").lower() != "websocket" or not key:
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return False
    accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
    connection.sendall(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )
    return True


def _send_frame(connection: socket.socket, opcode: int, data: bytes) -> None:
    """A final, unmasked frame (servers never mask)."""
    size = len(data)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    connection.sendall(head + data)


def _read_frame(reader: Any) -> tuple[int, bytes] | None:
    """One frame from the client (masked, as RFC 6455 requires of clients); None at the end of the stream."""
    head = reader.read(2)
    if len(head) < 2:
        return None
    opcode, masked, size = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
    if size == 126:
        size = struct.unpack("!H", reader.read(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", reader.read(8))[0]
    mask = reader.read(4) if masked else b"\0\0\0\0"
    data = reader.read(size)
    return opcode, bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))
