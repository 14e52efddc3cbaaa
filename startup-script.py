#!/usr/bin/env python3
"""vmbot's startup script: serves a small status page from the VM.

Compute Engine runs the ``startup-script`` metadata item as root at every boot
(the shebang picks the interpreter), so a created or restored VM serves this
page on port ``vmbot-web-port`` (default 8080). It reads only public metadata
and carries no secret.
"""

import datetime
import json
import os
import socket
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

METADATA = "http://metadata.google.internal/computeMetadata/v1/instance/"
BOOTED = datetime.datetime.now(datetime.timezone.utc)


def metadata(path: str, default: str) -> str:
    request = urllib.request.Request(METADATA + path, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return default


class StatusPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps(
            {
                "vm": metadata("name", socket.gethostname()),
                "zone": metadata("zone", "unknown").rsplit("/", 1)[-1],
                "booted": BOOTED.isoformat(),
                "served_by": "vmbot startup-script.py",
            },
            indent=2,
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(metadata("attributes/vmbot-web-port", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), StatusPage)
    # The guest agent waits for the startup script to end: serve from a detached child.
    if os.environ.get("VMBOT_FOREGROUND") != "1" and os.fork():
        return
    os.setsid()
    server.serve_forever()


if __name__ == "__main__":
    main()
