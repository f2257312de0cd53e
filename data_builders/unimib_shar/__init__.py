"""TFDS builder for unimib_shar (`python -m imujax.build_dataset data_builders/unimib_shar --manual_dir=...`)."""

from data_builders.unimib_shar.unimib_shar_dataset_builder import Builder

__all__ = ["Builder"]
