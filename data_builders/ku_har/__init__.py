"""TFDS builder for ku_har (`python -m imujax.build_dataset data_builders/ku_har --manual_dir=...`)."""

from data_builders.ku_har.ku_har_dataset_builder import Builder

__all__ = ["Builder"]
