"""TFDS builder for hapt (`python -m imujax.build_dataset data_builders/hapt --manual_dir=...`)."""

from data_builders.hapt.hapt_dataset_builder import Builder

__all__ = ["Builder"]
