"""TFDS builder for wisdm (`python -m imujax.build_dataset data_builders/wisdm --manual_dir=...`)."""

from data_builders.wisdm.wisdm_dataset_builder import Builder

__all__ = ["Builder"]
