"""Reporting: metrics.json files collated into results/summary.csv, then paper-style tables,
figures, the narrative and the protocol notes. Reads results only; never imports a method."""
