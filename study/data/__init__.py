"""Data sources for a study: the embedded synthetic set or a dataset config file.

Nothing in this package imports Ray or MLflow, so the same loaders run in a notebook.
"""

from __future__ import annotations

from pathlib import Path

from study.data.bundle import ID_SPLITS, OOD_SPLITS, SPLITS, DataBundle, Split

SYNTHETIC = "synthetic"
SYNTHETIC_IMAGE_SIZE = 64

__all__ = ["ID_SPLITS", "OOD_SPLITS", "SPLITS", "SYNTHETIC", "DataBundle", "Split", "load_data"]


def load_data(
    source: str | None,
    image_size: int | None,
    seed: int = 0,
    data_root: str | None = None,
    cache_dir: Path | None = None,
) -> DataBundle:
    """Load every split of a study's data at its network input size.

    Args:
        source: None or "synthetic" for the embedded synthetic set, else the path of a dataset
            config (YAML).
        image_size: network input side in pixels; None takes the dataset config's size, or
            64 for the synthetic set.
        seed: generator seed of the synthetic set; real data takes its split seed from its config.
        data_root: replaces the config's data root (the folder its relative sources start from).
        cache_dir: where decoded real images are cached between runs; None means the default
            cache folder (``LESION_STUDY_CACHE``, else ``~/.cache/lesion-study``).
    """
    if source is None or source == SYNTHETIC:
        from study.data.synthetic import SyntheticConfig, make_synthetic_bundle

        return make_synthetic_bundle(SyntheticConfig(image_size=image_size or SYNTHETIC_IMAGE_SIZE, seed=seed))

    from study.data.config import build_bundle, load_dataset_config

    config = load_dataset_config(source, data_root=data_root)
    return build_bundle(config, image_size=image_size, cache_dir=cache_dir)
