"""The network: ``network`` (the plain ``KerasCNN``, no Lightning), ``numerics`` (its thread-invariant ``Conv2d`` and
``Linear``), ``lit`` (its ``LightningModule``: loss, metrics, optimizers) and ``checkpoints`` (loading a trained one).

Light to import (no torch); import the heavy parts from their modules.
"""
