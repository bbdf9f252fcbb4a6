"""An HTTP forward proxy that sends every request to 127.0.0.1, on the port the URL names.

A real API server refuses loopback addresses in EndpointSlices, and the replicas here
listen on 127.0.0.1 only. So against it, the slices name replicas by FQDN
(``<replica>.replicas.test``), and the operator process gets ``HTTP_PROXY`` pointing here:
the stand-in for the cluster's DNS and pod network. The operator's code is unchanged (its
HTTP client honours the standard proxy variables).
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
              "trailers", "transfer-encoding", "upgrade"}


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _relay(self) -> None:
        target = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        connection = http.client.HTTPConnection("127.0.0.1", target.port or 80, timeout=30)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            connection.request(self.command, path or "/", body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except OSError as exc:
            self.send_error(502, f"cannot reach 127.0.0.1:{target.port}: {exc}")
            return
        finally:
            connection.close()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP | {"content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackProxy:
    """Serves on 127.0.0.1 in a daemon thread until :meth:`stop`."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Forward)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="loopback-proxy")
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
