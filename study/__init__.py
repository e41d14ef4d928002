"""Lesion-segmentation loss study: CE / soft-Dice mixtures against specificity on lesion-free images."""

import os

__version__ = "0.1.0"

# albumentations requests its latest version from PyPI each time it is imported, and every trial
# worker imports it. A study needs no network, so the check is off unless the user turns it on.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
