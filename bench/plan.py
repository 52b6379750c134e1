"""The windows every benchmark cycle uses, shared by the runner and the pusher process.

Kept free of imports, so that the pusher process (`bench/cycle_process.py`) loads
nothing more than the pusher itself: its peak RSS is measured.
"""

from __future__ import annotations

DAY = 86_400
HOUR = 3_600
LOOKBACK_DAYS = 3
BACKFILL_DAYS = 30
LOOKBACK_HOURS = 24
BACKFILL_HOURS = 168
API_PAGE_BUCKETS = 31
"""Buckets per page the synthetic API serves: the real API returns about 31 days."""
WIDTHS = ("off", "1d", "1h")
"""Usage widths: `off` is costs alone."""
