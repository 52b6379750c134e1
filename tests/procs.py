"""Start and stop real server processes for tests: free ports, readiness, clean stops.

This module owns process lifetime only. It knows nothing about what the servers do;
`vm.py` builds VictoriaMetrics, vmagent and vmauth on top of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def vm_bin_dir() -> Path:
    """Return the folder with the VictoriaMetrics 1.112 and Alertmanager binaries.

    `scripts/fetch-victoriametrics.sh` fills it; `VM_BIN_DIR` overrides the place. A
    test that needs a binary fails (never skips) when it is missing: CI installs it.
    """
    return Path(os.environ.get("VM_BIN_DIR", ROOT / ".cache" / "vm" / "bin"))


def binary(name: str) -> str:
    """Return the path of one server binary, failing with the fix when it is missing."""
    path = vm_bin_dir() / name
    if not path.exists():
        found = shutil.which(name) if name != "victoria-metrics" else None
        if found is None:
            msg = f"{path} is missing: run scripts/fetch-victoriametrics.sh"
            raise RuntimeError(msg)
        return found
    return str(path)


class ServerProcess:
    """One server process with its log file; stopped by its process id."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Wait until `url` answers 200, or fail with the server's log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        msg = f"{self.name} did not become ready at {url}:\n{self.log_tail()}"
        self.stop()
        raise RuntimeError(msg)

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the server's log, for failure messages."""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """Kill the process by its pid with SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process by its pid: SIGTERM, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()
