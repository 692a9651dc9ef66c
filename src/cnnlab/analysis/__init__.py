"""Reading finished runs back: ``compare`` (the comparison table and curves), ``stats`` (the statistics behind the
verdicts) and ``report`` (the lab report). Nothing here imports ``training``."""
