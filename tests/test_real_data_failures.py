"""Why the released TSFM and EVI-MAE recipes did not learn on real HAR recordings (issue 20), as checks that can fail.

1. TSFM z-scores every (patch, channel) before the encoder and reconstructs that z-scored patch: its trivial
   loss (predict 0) is exactly 1 per element, and what is left after z-scoring a posture/gravity-dominated
   recording (a level plus sensor noise) is noise that no neighbour predicts; the same patches with their levels kept
   are almost fully predictable from their neighbours.
2. EVI-MAE's contrastive term cannot go below the mean log of the number of indistinguishable pairs in the batch:
   a batch of real windows from a few long static activities holds many near-identical pairs, so at batch 32 it sits
   near ln(32) whatever the encoders learn.
"""

import jax.numpy as jnp
import numpy as np

from imujax.objectives.infonce import evi_mae_info_nce
from imujax.transforms.tsfm_patches import unfold_patches, zscore_patches


def _neighbour_r2(patches: np.ndarray) -> float:
    """Held-out R² of the least-squares prediction of patch k from patches k-1 and k+1 (fit on the first half)."""
    x = np.concatenate([patches[:-2], patches[2:], np.ones((len(patches) - 2, 1))], axis=1)
    y = patches[1:-1]
    half = len(y) // 2
    coef, *_ = np.linalg.lstsq(x[:half], y[:half], rcond=None)
    residual = x[half:] @ coef - y[half:]
    return 1.0 - float(np.mean(residual ** 2) / np.mean((y[half:] - y[half:].mean(0)) ** 2))


def test_tsfm_zscored_patch_target_is_unpredictable_but_levels_are_not():
    rng = np.random.default_rng(0)
    rate, seconds, patch = 50, 2400, 50
    t = np.arange(rate * seconds) / rate
    # A posture recording: gravity on one axis changing level every ~20 s (sit / stand / lie), sensor noise.
    levels = np.repeat(rng.uniform(-9.8, 9.8, seconds // 20), 20 * rate)
    signal = levels + 0.02 * rng.normal(size=t.shape)
    raw = unfold_patches(signal[:, None], patch, patch)[..., 0]            # [P, L]
    z = zscore_patches(raw[..., None])[..., 0]
    assert np.allclose(np.mean(z ** 2), 1.0, atol=1e-3)                    # the trivial loss is exactly 1
    assert _neighbour_r2(z) < 0.1                                           # z-scored: unpredictable
    assert _neighbour_r2(raw / raw.std()) > 0.9                            # levels kept: predictable


def test_info_nce_floor_is_log_of_indistinguishable_pairs():
    rng = np.random.default_rng(0)
    batch, dim = 32, 16
    for group in (1, 4, 32):                     # 32 distinct pairs ... all 32 windows from one static activity
        centres = rng.normal(size=(batch // group, dim))
        emb = jnp.asarray(np.repeat(centres, group, axis=0))  # perfectly aligned IMU/video, identical within a group
        loss, _ = evi_mae_info_nce(emb, emb, temperature=0.01)
        assert abs(float(loss) - np.log(group)) < 0.05, (group, float(loss))
