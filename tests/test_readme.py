"""The README's MetricsQL runs as written, on a real VictoriaMetrics holding the demo.

Every query in a ```promql block is sent to `/api/v1/query` after the demo month was
pushed, and must answer with data. Grafana-only variables stay out of those blocks.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import requests

from tests.procs import ROOT
from tests.test_cli import run_cli
from tests.vm import VictoriaMetrics

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def promql_queries(text: str) -> list[str]:
    """Return every query line of the ```promql blocks (comments skipped)."""
    return [
        line.strip()
        for lang, body in BLOCK.findall(text)
        if lang == "promql"
        for line in body.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_readme_has_queries_and_no_grafana_variables_in_them() -> None:
    """Queries exist; `$__` variables appear only in blocks not marked promql, and
    only in the Grafana section."""
    queries = promql_queries(README)
    assert len(queries) >= 5
    assert not [q for q in queries if "$__" in q]
    grafana = README.index("### Grafana")
    after = README.index("\n### ", grafana + 1)
    for match in re.finditer(r"\$__\w+", README):
        assert grafana < match.start() < after, match.group(0)


def test_every_readme_query_answers_with_data(
    tmp_path: Path, vm: VictoriaMetrics
) -> None:
    """Each query returns a non-empty result over the demo month."""
    pushed = run_cli(["--demo", "--once"], tmp_path, {"VM_PUSH_URL": vm.push_url})
    assert pushed.returncode == 0, pushed.stderr
    vm.flush()
    failures = []
    for query in promql_queries(README):
        # just-pushed series may take a moment to become searchable
        deadline = time.monotonic() + 15
        while True:
            resp = requests.post(
                f"{vm.url}/api/v1/query", data={"query": query}, timeout=30
            )
            body = resp.json()
            ok = resp.status_code == 200 and bool(body["data"]["result"])
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not ok:
            failures.append((query, resp.status_code, str(body)[:200]))
    assert not failures, failures
