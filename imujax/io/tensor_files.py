"""Tensor files (.safetensors, torch .pth/.pt/.ckpt) for code outside the bridge: builders and the text encoder.

The one reader lives in `imujax.bridges.torch.reader` (torch-free; it never executes pickled code); this is the
neutral import point, so data and text code do not depend on the bridge package.
"""

from imujax.bridges.torch.reader import load_checkpoint, load_safetensors

__all__ = ["load_checkpoint", "load_safetensors"]
