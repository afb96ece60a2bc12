"""A Ray cluster of several nodes on this one machine, started with the stock ``ray start`` commands: for trying
the cluster recipe of ``docs/batch.md`` locally, and for the tests and the benchmark.

:class:`LocalCluster` starts a head (``ray start --head``) and ``nodes - 1`` more nodes (``ray start
--address``), each with ``cpus_per_node`` CPUs, in a temporary folder of their own and with a token of their own
(Ray's token authentication, ``RAY_AUTH_MODE=token``); :meth:`LocalCluster.stop` ends exactly the processes it
started (those whose command line names that folder, and their children), by process id: never ``ray stop``,
which ends every Ray on the machine. ``env`` is what a driver needs to connect (``rtface batch --address
ADDRESS`` with that environment)::

    with LocalCluster(nodes=2, cpus_per_node=1) as c:
        subprocess.run(["rtface", "batch", "clips/", "--out", "out", "--address", c.address], env=c.env)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import BackendUnavailable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of this machine's processes (Linux /proc)."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                stat = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if stat[0] != "Z":
                out[int(d)] = (int(stat[1]), cmd)
    return out


class LocalCluster:
    """``nodes`` Ray nodes on this machine (module docstring). Linux only (it finds its processes in /proc)."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 100,
                 env: dict[str, str] | None = None) -> None:
        self.nodes = int(nodes)
        self.cpus_per_node = int(cpus_per_node)
        self.object_store_mb = int(object_store_mb)
        self.extra_env = dict(env or {})
        self.folder: Path | None = None
        self.address = ""
        self.env: dict[str, str] = {}

    def start(self) -> "LocalCluster":
        exe = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
        if exe is None:
            raise BackendUnavailable("the 'ray' command is missing: pip install 'rtface[batch]'")
        # short: Ray's socket paths under it must fit in 107 bytes
        self.folder = Path(tempfile.mkdtemp(prefix="rtfray", dir="/tmp" if os.path.isdir("/tmp") else None))
        token = self.folder / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), **self.extra_env)
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        common = [f"--num-cpus={self.cpus_per_node}", "--node-ip-address=127.0.0.1",
                  f"--object-store-memory={self.object_store_mb * 1_000_000}", "--disable-usage-stats"]
        commands = [[exe, "start", "--head", f"--port={port}", "--include-dashboard=false",
                     f"--temp-dir={self.folder}", *common]]
        commands += [[exe, "start", f"--address={self.address}", *common] for _ in range(self.nodes - 1)]
        try:
            for cmd in commands:
                r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)
                if r.returncode != 0:
                    raise BackendUnavailable(f"'{' '.join(cmd[1:3])} ...' failed: {(r.stderr or r.stdout)[-1500:]}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> list[int]:
        """End the cluster's processes (SIGTERM, SIGKILL after 3 s) and remove its folder; returns their ids."""
        if self.folder is None:
            return []
        marker = str(self.folder)
        procs = _processes()
        ours = {p for p, (_, cmd) in procs.items() if marker in cmd and p != os.getpid()}
        while True:
            children = {p for p, (ppid, _) in procs.items() if ppid in ours} - ours
            if not children:
                break
            ours |= children
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
            for p in ours:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and set(_processes()) & ours:
                time.sleep(0.1)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
        return sorted(ours)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["LocalCluster"]
