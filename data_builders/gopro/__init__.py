"""TFDS builder for GoPro MP4 files with GPMF telemetry (`tfds build data_builders/gopro`)."""

from data_builders.gopro.gopro_dataset_builder import Builder, GoproConfig

__all__ = ["Builder", "GoproConfig"]
