"""TFDS builder for dsads (`python -m imujax.build_dataset data_builders/dsads --manual_dir=...`)."""

from data_builders.dsads.dsads_dataset_builder import Builder

__all__ = ["Builder"]
