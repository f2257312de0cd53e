"""TFDS builder for hhar (`python -m imujax.build_dataset data_builders/hhar --manual_dir=...`)."""

from data_builders.hhar.hhar_dataset_builder import Builder

__all__ = ["Builder"]
