"""Real VictoriaMetrics, vmagent and vmauth servers for tests, with read-back helpers.

Each server runs from the Debian trixie 1.112 package that
`scripts/fetch-victoriametrics.sh` unpacks, on 127.0.0.1 and a free port, with a data
folder under the test's temporary directory. Reads go through `/api/v1/export` and
`/api/v1/query`, which is how a user sees the data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.procs import ServerProcess, binary, free_port


@dataclass(frozen=True)
class ExportedSeries:
    """One series read back from `/api/v1/export`: labels, values and ms timestamps."""

    metric: dict[str, str]
    values: list[float]
    timestamps: list[int]


class VictoriaMetrics:
    """A single-node VictoriaMetrics with deduplication on, as the product requires."""

    def __init__(self, workdir: Path, *, dedup: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / f"vm-data-{self.port}"
        args = [
            binary("victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=5y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]
        if dedup:
            args.append("-dedup.minScrapeInterval=1ms")
        self.process = ServerProcess(
            "victoria-metrics", args, workdir / f"vm-{self.port}.log"
        )
        self.process.wait_http(f"{self.url}/health")

    @property
    def push_url(self) -> str:
        """Return the Prometheus text import endpoint."""
        return f"{self.url}/api/v1/import/prometheus"

    def flush(self) -> None:
        """Make freshly imported samples visible to queries at once."""
        requests.get(f"{self.url}/internal/force_flush", timeout=10).raise_for_status()

    def export(self, match: str = '{__name__=~".+"}') -> list[ExportedSeries]:
        """Return every stored series matching `match`, with all raw samples.

        `/api/v1/export` may stream one series in several lines (one per data part);
        they are merged here, so each series appears once, samples sorted by time.
        """
        self.flush()
        resp = requests.post(
            f"{self.url}/api/v1/export",
            data={"match[]": match, "start": "0"},
            timeout=30,
        )
        resp.raise_for_status()
        merged: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        for line in resp.text.splitlines():
            if line.strip():
                row = json.loads(line)
                key = tuple(sorted(row["metric"].items()))
                merged.setdefault(key, []).extend(
                    zip(row["timestamps"], row["values"], strict=True)
                )
        out = []
        for key, points in merged.items():
            points.sort()
            out.append(
                ExportedSeries(
                    dict(key), [v for _, v in points], [t for t, _ in points]
                )
            )
        return out

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Run an instant query and return its vector result."""
        self.flush()
        params: dict[str, str] = {"query": expr}
        if at is not None:
            params["time"] = str(at)
        resp = requests.get(f"{self.url}/api/v1/query", params=params, timeout=30)
        resp.raise_for_status()
        body = resp.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def delete_series(self, match: str) -> None:
        """Delete every series matching `match` through the admin API."""
        resp = requests.post(
            f"{self.url}/api/v1/admin/tsdb/delete_series",
            data={"match[]": match},
            timeout=30,
        )
        resp.raise_for_status()

    def stop(self) -> None:
        """Stop the server by its process id."""
        self.process.stop()

    def kill(self) -> None:
        """Kill the server with SIGKILL by its process id: a crash."""
        self.process.kill()

    def restart(self) -> None:
        """Start the server again on the same port and data folder."""
        old = self.process
        self.process = ServerProcess(old.name, old.args, old.log_path)
        self.process.wait_http(f"{self.url}/health")


class VmAgent:
    """A vmagent that forwards everything it receives to one VictoriaMetrics."""

    def __init__(self, workdir: Path, target: VictoriaMetrics) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            binary("vmagent"),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-remoteWrite.url={target.url}/api/v1/write",
            f"-remoteWrite.tmpDataPath={workdir / f'vmagent-{self.port}'}",
            "-remoteWrite.flushInterval=100ms",
            "-loggerLevel=WARN",
        ]
        self.process = ServerProcess(
            "vmagent", args, workdir / f"vmagent-{self.port}.log"
        )
        self.process.wait_http(f"{self.url}/health")

    @property
    def push_url(self) -> str:
        """Return vmagent's Prometheus text import endpoint."""
        return f"{self.url}/api/v1/import/prometheus"

    def stop(self) -> None:
        """Stop the agent by its process id."""
        self.process.stop()

    def kill(self) -> None:
        """Kill the agent with SIGKILL by its process id: a crash."""
        self.process.kill()

    def restart(self) -> None:
        """Start the agent again on the same port and queue folder."""
        old = self.process
        self.process = ServerProcess(old.name, old.args, old.log_path)
        self.process.wait_http(f"{self.url}/health")


class VmAuth:
    """A vmauth in front of one VictoriaMetrics, with a basic-auth and a bearer user."""

    def __init__(
        self,
        workdir: Path,
        target: VictoriaMetrics,
        *,
        username: str,
        password: str,
        bearer_token: str,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / f"vmauth-{self.port}.yml"
        users = [
            {"username": username, "password": password, "url_prefix": target.url},
            {"bearer_token": bearer_token, "url_prefix": target.url},
        ]
        config.write_text(json.dumps({"users": users}))  # JSON is valid YAML
        args = [
            binary("vmauth"),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-auth.config={config}",
            "-loggerLevel=WARN",
        ]
        self.process = ServerProcess(
            "vmauth", args, workdir / f"vmauth-{self.port}.log"
        )
        self.process.wait_http(f"{self.url}/health")

    @property
    def push_url(self) -> str:
        """Return the import endpoint as seen through vmauth."""
        return f"{self.url}/api/v1/import/prometheus"

    def stop(self) -> None:
        """Stop vmauth by its process id."""
        self.process.stop()
