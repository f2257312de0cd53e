"""TFDS builder for mobiact (`python -m imujax.build_dataset data_builders/mobiact --manual_dir=...`)."""

from data_builders.mobiact.mobiact_dataset_builder import Builder

__all__ = ["Builder"]
