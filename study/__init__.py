"""Lesion-segmentation loss study: CE / soft-Dice mixtures against specificity on lesion-free images."""

__version__ = "0.1.0"
