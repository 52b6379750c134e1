"""Run the pusher as `python -m openai_cost_pusher`."""

from __future__ import annotations

from openai_cost_pusher.cli import main

raise SystemExit(main())
