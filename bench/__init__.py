"""kubegrid's benchmark: kubegrid against GridSearchCV on the same machine.

Run it from the repository root as ``python -m bench`` (see bench/README.md).
Every contender runs as a child process of the benchmark, so time, CPU and
memory are measured the same way for each. This package imports nothing heavy
at import time: ``python -m bench.baseline`` runs inside the measured child and
must not pay for the harness.
"""
