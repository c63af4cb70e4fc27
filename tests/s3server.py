"""A real S3 endpoint on loopback (moto's server), and a fault-injecting HTTP proxy in front of it.

The proxy forwards every request unchanged except that it answers some with 503 SlowDown or drops the
connection, the way a busy object store does; clients must retry through it.

Both run in processes of their own: delta-rs holds the GIL during some requests (DeltaTable.history), which
would deadlock a server thread in the test process.
"""
from __future__ import annotations

import http.client
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SLOW_DOWN = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, proc: subprocess.Popen | multiprocessing.Process) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            alive = proc.poll() is None if isinstance(proc, subprocess.Popen) else proc.is_alive()
            if time.monotonic() > deadline or not alive:
                raise RuntimeError(f"server on port {port} did not start") from None
            time.sleep(0.1)


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        moto = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(self.port, self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_moto() -> tuple[MotoServer, str]:
    server = MotoServer()
    return server, f"http://127.0.0.1:{server.port}"


def _serve_proxy(upstream_port: int, every: int, port: int, counters: multiprocessing.Array) -> None:
    """counters: [requests, 503s, resets], shared with the test process."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                counters[0] += 1
                count = counters[0]
                fault = count % every == 0
                kind = "503" if (count // every) % 2 else "reset"
                if fault:
                    counters[1 if kind == "503" else 2] += 1
            if fault and kind == "reset":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault:
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(SLOW_DOWN)
                return
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            conn.request(self.command, self.path, body=body or None, headers=dict(self.headers))
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            # a HEAD answer keeps the object's length; it has no body of its own
            self.send_header("Content-Length", resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class FaultProxy:
    """Every `every`-th request fails: alternately a 503 SlowDown and a connection closed without a response."""

    def __init__(self, upstream_port: int, every: int):
        port = free_port()
        self.counters = multiprocessing.get_context("spawn").Array("i", 3)
        self.proc = multiprocessing.get_context("spawn").Process(
            target=_serve_proxy, args=(upstream_port, every, port, self.counters), daemon=True
        )
        self.proc.start()
        _wait_for(port, self.proc)
        self.url = f"http://127.0.0.1:{port}"

    @property
    def injected(self) -> dict[str, int]:
        return {"503": self.counters[1], "reset": self.counters[2]}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(timeout=10)
