"""Across runs: DVC experiment records, sweeps, aggregation over seeds, reports and plots."""
