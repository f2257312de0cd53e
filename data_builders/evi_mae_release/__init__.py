"""TFDS builder for the EVI-MAE release format (`data_release/<dataset>/cav_label/...` json + video + IMU csv)."""

from data_builders.evi_mae_release.evi_mae_release_dataset_builder import Builder, EviMaeReleaseConfig

__all__ = ["Builder", "EviMaeReleaseConfig"]
