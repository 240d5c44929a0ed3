"""Benchmarks: every backend side by side in one run (``tvdeploy bench``)."""
