"""Durations written for people: the one rule that cuts seconds into hours, minutes and seconds (light to import:
the CLI uses it before torch is loaded)."""

from __future__ import annotations


def clock_parts(seconds: int) -> tuple[int, int, int]:
    """Whole ``seconds`` as (hours, minutes, seconds), minutes and seconds below 60."""
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return h, m, s


def format_duration(seconds: float) -> str:
    """12m05s, 1h03m (whole seconds, rounded down)."""
    h, m, s = clock_parts(int(seconds))
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
