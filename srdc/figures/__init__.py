"""Figures as PNG files. A run's (:mod:`srdc.figures.trial`): drawn at its end from its history and the compact
per-epoch snapshots the trainer keeps (:mod:`srdc.figures.snapshot`); they import nothing of ``srdc``, the trainer
and the harness hand them plain values. matplotlib is imported where a figure is drawn."""
