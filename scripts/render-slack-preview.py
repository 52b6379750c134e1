#!/usr/bin/env python3
"""Render the Slack message the alerting pipeline sends, as docs/slack-alert.png.

Runs the same end-to-end chain as tests/test_alert_rules.py (a real VictoriaMetrics
seeded with a spike for project alpha, real vmalert with the shipped rules, real
Alertmanager with a test copy of the shipped config, the fake Slack webhook), takes
the payload the fake webhook received, lays it out like Slack shows an attachment
in a small HTML page, and captures that page with headless Chromium
(`apt-get install -y chromium` on Debian).

Usage: .venv/bin/python scripts/render-slack-preview.py [--out docs/slack-alert.png]
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.alerting import Stoppable, deliver_to_slack  # noqa: E402

EMOJI = {
    ":rotating_light:": '<span style="color:#e01e5a">&#x25CF;</span>',
    ":white_check_mark:": '<span style="color:#2eb67d">&#x2714;</span>',
}
COLORS = {"good": "#2eb67d", "warning": "#ecb22e", "danger": "#e01e5a"}
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #fff; font: 15px/1.46668 -apple-system, "Segoe UI",
  "Helvetica Neue", "DejaVu Sans", Arial, sans-serif; color: #1d1c1d; }}
.msg {{ display: flex; padding: 16px 20px; }}
.avatar {{ width: 36px; height: 36px; border-radius: 6px; background: #4a154b;
  color: #fff; font-weight: 700; display: flex; align-items: center;
  justify-content: center; margin-right: 10px; flex: none; }}
.name {{ font-weight: 900; }} .app {{ font-size: 10px; background: #e8e8e8;
  border-radius: 2px; padding: 1px 3px; margin-left: 4px; color: #616061; }}
.time {{ color: #616061; font-size: 12px; margin-left: 6px; }}
.att {{ display: flex; margin-top: 6px; }}
.bar {{ width: 4px; border-radius: 8px; flex: none; margin-right: 12px; }}
.title {{ font-weight: 700; color: #1264a3; }}
.text {{ white-space: pre-wrap; margin-top: 2px; }}
code {{ font: 12px Menlo, "DejaVu Sans Mono", monospace; color: #e01e5a;
  background: #f6f6f6; border: 1px solid #e1e1e1; border-radius: 3px;
  padding: 0 3px; }}
a {{ color: #1264a3; text-decoration: none; }}
</style></head><body>{body}</body></html>
"""


def mrkdwn(text: str) -> str:
    """Turn Slack mrkdwn (*bold*, `code`, <url|label>) into escaped HTML."""
    out = html.escape(text, quote=False)
    out = re.sub(r"&lt;(https?://[^|&]+)\|([^&]+)&gt;", r'<a href="\1">\2</a>', out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*([^*\n]+)\*", r"<b>\1</b>", out)


def page(payload: dict[str, Any]) -> str:
    """Return the HTML page showing one Slack webhook payload."""
    parts = []
    for att in payload.get("attachments", []):
        color = COLORS.get(att.get("color", ""), att.get("color", "#ddd"))
        title = html.escape(att.get("title", ""))
        for code, glyph in EMOJI.items():  # Slack shows emoji for these codes
            title = title.replace(code, glyph)
        if att.get("title_link"):
            title = f'<a href="{html.escape(att["title_link"])}">{title}</a>'
        parts.append(
            f'<div class="att"><div class="bar" style="background:{color}"></div>'
            f'<div><div class="title">{title}</div>'
            f'<div class="text">{mrkdwn(att.get("text", "").strip())}</div></div></div>'
        )
    name = html.escape(payload.get("username") or "Alertmanager")
    body = (
        '<div class="msg"><div class="avatar">AM</div><div>'
        f'<span class="name">{name}</span><span class="app">APP</span>'
        '<span class="time">09:41</span>' + "".join(parts) + "</div></div>"
    )
    return PAGE.format(body=body)


def screenshot(html_path: Path, png: Path, size: str) -> None:
    """Capture `html_path` with headless Chromium into `png`."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        msg = "chromium is missing: apt-get install -y chromium"
        raise SystemExit(msg)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={size}",
                html_path.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main(argv: list[str] | None = None) -> int:
    """Capture a real payload and render it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "slack-alert.png")
    parser.add_argument("--size", default="760,330", help="window WIDTH,HEIGHT")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="slack-preview-") as tmp:
        work = Path(tmp)
        started: list[Stoppable] = []
        try:
            delivery = deliver_to_slack(work, started, settle=1.0)
        finally:
            for server in reversed(started):
                server.stop()
        if not delivery.payloads:
            sys.stderr.write("no Slack message arrived\n")
            return 1
        payload = delivery.payloads[0]
        (work / "payload.json").write_text(json.dumps(payload, indent=2))
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        html_path = work / "slack.html"
        html_path.write_text(page(payload))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(html_path, args.out, args.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
