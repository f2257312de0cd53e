"""TFDS builder for users' own IMU (+ optional video) recordings described by a small manifest."""

from data_builders.imu_video_folder.imu_video_folder_dataset_builder import Builder, ImuVideoFolderConfig

__all__ = ["Builder", "ImuVideoFolderConfig"]
