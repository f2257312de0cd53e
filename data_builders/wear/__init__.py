"""TFDS builder for the WEAR inertial data (`data_builders/wear`): 4 wrist/ankle accelerometers at 50 Hz."""

from data_builders.wear.wear_dataset_builder import Builder, WearConfig

__all__ = ["Builder", "WearConfig"]
