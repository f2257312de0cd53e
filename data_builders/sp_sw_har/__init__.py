"""TFDS builder for the sp-sw-har smartphone + smartwatch HAR dataset (`tfds build data_builders/sp_sw_har`)."""

from data_builders.sp_sw_har.sp_sw_har_dataset_builder import Builder, SpSwHarConfig

__all__ = ["Builder", "SpSwHarConfig"]
