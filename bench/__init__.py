"""Benchmarks of the release orchestrator against the limit of its own Temporal server.

`make bench` (`python -m bench`) starts a stack of its own, runs every benchmark, prints the
table and writes bench/results/latest.json; see bench/README.md. Not part of `make test`.
"""
