"""TFDS builder for recgym (`python -m imujax.build_dataset data_builders/recgym --manual_dir=...`)."""

from data_builders.recgym.recgym_dataset_builder import Builder

__all__ = ["Builder"]
