"""Benchmarks (`make bench`): speed targets measured as ratios or budgets against a
baseline run in the same script. Not part of `make test`."""
