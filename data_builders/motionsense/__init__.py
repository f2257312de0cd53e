"""TFDS builder for motionsense (`python -m imujax.build_dataset data_builders/motionsense --manual_dir=...`)."""

from data_builders.motionsense.motionsense_dataset_builder import Builder

__all__ = ["Builder"]
