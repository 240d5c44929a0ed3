"""Torch side: the catalog of torchvision classifiers, weights resolution and checkpoint loading."""
