"""TFDS builder for UCI HAR (`python -m imujax.build_dataset data_builders/uci_har --manual_dir=...`)."""

from data_builders.uci_har.uci_har_dataset_builder import Builder

__all__ = ["Builder"]
