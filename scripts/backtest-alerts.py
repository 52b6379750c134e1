#!/usr/bin/env python3
"""Replay the shipped alert rules over seeded cost histories and print what fired.

Each scenario of tests/cost_histories.py goes into its own real VictoriaMetrics;
vmalert's replay mode evaluates deploy/vmalert/openai-cost-rules.yml hourly over
March 2025, and the ALERTS series it writes back are turned into a Markdown table.
With --write, the table replaces the one between the back-test markers in
docs/alerting.md (tests/test_alert_rules.py checks that the two agree).

Usage: .venv/bin/python scripts/backtest-alerts.py [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.alerting import backtest, render_table  # noqa: E402

DOC = ROOT / "docs" / "alerting.md"
BEGIN = "<!-- backtest:begin (scripts/backtest-alerts.py --write) -->\n"
END = "<!-- backtest:end -->\n"


def replace_table(doc: str, table: str) -> str:
    """Return `doc` with the text between the back-test markers set to `table`."""
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + BEGIN + table + END + tail


def main(argv: list[str] | None = None) -> int:
    """Run the back-test; print the table or write it into docs/alerting.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update docs/alerting.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="backtest-") as tmp:
        table = render_table(backtest(Path(tmp)))
    if args.write:
        DOC.write_text(replace_table(DOC.read_text(), table))
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
