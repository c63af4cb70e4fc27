"""A real multi-node Ray cluster on this machine: one `ray start` process per node, each with its own CPUs and a
resource label of its own (node_0, node_1, ...), all on loopback with free ports and a temp dir of their own, so
starting and stopping it touches no other Ray here. Used by tests/test_nodes.py and benchmarks/multinode.py."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Self

from s3server import free_port

RAY = str(Path(sys.executable).parent / "ray")
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}

# Run in a fresh interpreter (a driver of its own, not this process's Ray): waits until `n` nodes are alive, then
# prints {node id: its vidbatch label}.
_WAIT = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
deadline = time.time() + float(sys.argv[3])
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= int(sys.argv[2]) or time.time() > deadline:
        break
    time.sleep(0.5)
print(json.dumps({n["NodeID"]: next((k for k in n["Resources"] if k.startswith("node_")), "") for n in alive}))
"""


def _ports() -> list[str]:
    return [
        f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
        f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
    ]


class LocalCluster:
    """`nodes` Ray nodes of `cpus` CPUs each; `address` to join it, `labels` {node id: node_i} once started."""

    def __init__(self, nodes: int, cpus: int = 1, name: str = "ray-nodes"):
        self.temp_dir = tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp")
        self.address = f"127.0.0.1:{free_port()}"
        self.procs: list[subprocess.Popen] = []
        self.labels: dict[str, str] = {}
        try:
            for i in range(nodes):
                role = (
                    ["--head", f"--port={self.address.split(':')[1]}", "--include-dashboard=false",
                     f"--ray-client-server-port={free_port()}", f"--temp-dir={self.temp_dir}"]
                    if i == 0 else [f"--address={self.address}"]
                )
                self.procs.append(subprocess.Popen(
                    [RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
                     f"--resources={json.dumps({f'node_{i}': 1})}", "--disable-usage-stats", *role, *_ports()],
                    env=ENV, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))
            wait = subprocess.run(
                [sys.executable, "-c", _WAIT, self.address, str(nodes), "120"], env=ENV, capture_output=True, text=True,
                timeout=300, check=True,
            )
            self.labels = json.loads(wait.stdout.strip().splitlines()[-1])
            if len(self.labels) < nodes:
                raise RuntimeError(f"only {len(self.labels)} of {nodes} Ray nodes came up")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Each node's own process group, worker nodes first; nothing else on the machine is touched."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = []
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
