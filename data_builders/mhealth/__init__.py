"""TFDS builder for mhealth (`python -m imujax.build_dataset data_builders/mhealth --manual_dir=...`)."""

from data_builders.mhealth.mhealth_dataset_builder import Builder

__all__ = ["Builder"]
