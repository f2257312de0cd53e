"""TFDS builder for Ego4D IMU + video narration windows (IMU2CLIP windows: 5 s at 200 Hz)."""

from data_builders.ego4d_imu.ego4d_imu_dataset_builder import Builder, Ego4dImuConfig

__all__ = ["Builder", "Ego4dImuConfig"]
