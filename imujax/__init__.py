"""imujax: self-supervised IMU + egocentric-video pretraining in JAX/Flax NNX."""
import flax

# Models are built unsharded (annotations kept as metadata) and placed on the mesh by imujax.sharding, so the
# same model code runs in tests, on one device and on a pod without an ambient mesh at construction time.
flax.config.update("flax_always_shard_variable", False)

__version__ = "0.1.0"
