"""Readers for raw recording formats used by the data builders.

- `mp4`: ISO-BMFF box walker that locates the samples of one track (no decoding).
- `gpmf`: GoPro GPMF telemetry (KLV) parser: ACCL/GYRO with scaling, axis order and timestamps.
- `video_frames`: PyAV decoding of frames at chosen times, resized and JPEG-encoded for TFDS.
- `csv_table`: strict numeric csv reading with per-file error messages.
- `timeseries`: de-duplication, rate estimation, resampling, windowing, window labels.
- `tensor_files`: .safetensors and torch checkpoint files (the bridge's torch-free reader, re-exported).

Modules are imported explicitly (`from imujax.io import gpmf`) so that importing the package stays cheap and
PyAV is only needed by code that decodes video.
"""
