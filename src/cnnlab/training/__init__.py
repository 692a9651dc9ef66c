"""Training: ``config`` (``FitConfig``, light), ``fit`` (one run and its Trainer), ``recorder`` (what a run writes
after every epoch), ``measure`` (the test sets at the end), ``interrupts`` (stopping at an epoch boundary),
``study`` (the exercise's grid) and ``jobs`` (several runs at once in worker processes).

Light to import (no torch): the command line imports ``config`` before torch loads; import the heavy parts from
their modules.
"""
