"""TFDS builder for realworld_har (`python -m imujax.build_dataset data_builders/realworld_har --manual_dir=...`)."""

from data_builders.realworld_har.realworld_har_dataset_builder import Builder

__all__ = ["Builder"]
