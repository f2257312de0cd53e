"""TFDS builder for RevalExo (`python -m imujax.build_dataset data_builders/revalexo --manual_dir=trimmed/`)."""

from data_builders.revalexo.revalexo_dataset_builder import Builder, RevalExoConfig

__all__ = ["Builder", "RevalExoConfig"]
