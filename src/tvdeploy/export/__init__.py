"""Torch side: one exporter per format, parity against eager PyTorch, artifact writing."""
