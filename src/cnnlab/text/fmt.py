"""Numbers written for people (light to import: the CLI uses it before torch is loaded)."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """12m05s, 1h03m."""
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"
