"""Push exact daily OpenAI organization costs to VictoriaMetrics."""

from __future__ import annotations

__version__ = "0.1.0"
