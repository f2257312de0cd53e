"""TFDS builder for Ego-Exo4D Aria left-IMU windows with Omnivore features (`data_builders/egoexo4d_imu`)."""

from data_builders.egoexo4d_imu.egoexo4d_imu_dataset_builder import Builder, EgoExo4DImuConfig

__all__ = ["Builder", "EgoExo4DImuConfig"]
