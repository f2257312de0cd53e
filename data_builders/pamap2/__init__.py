"""TFDS builder for pamap2 (`python -m imujax.build_dataset data_builders/pamap2 --manual_dir=...`)."""

from data_builders.pamap2.pamap2_dataset_builder import Builder

__all__ = ["Builder"]
