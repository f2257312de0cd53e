"""TFDS builder for vtt_coniot (`python -m imujax.build_dataset data_builders/vtt_coniot --manual_dir=...`)."""

from data_builders.vtt_coniot.vtt_coniot_dataset_builder import Builder

__all__ = ["Builder"]
