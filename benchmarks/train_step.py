"""Train-step throughput of a system in JAX and, in the same run, of the ORIGINAL upstream PyTorch code (or of this
repository's PyTorch test reference) on the same row.

  python benchmarks/train_step.py --all [--steps=5] [--rounds=3] [--no_compile]  # the four issue-9 rows, one table
  python benchmarks/train_step.py --config=configs/primus.py [--batch=64]    # one system (any config variant)
  python benchmarks/train_step.py --bench=deepconvlstm --jax_only            # one row by name (see --list)

Rows (full released sizes; `--config` picks the row of the config's system and uses that config's sizes):

| name         | config                          | batch | step                                                            |
|--------------|---------------------------------|-------|-----------------------------------------------------------------|
| evi_mae      | configs/evi_mae.py              | 2     | EVI-MAE pretraining loss (MAE x2 + contrastive + graph)         |
| primus       | configs/primus.py               | 64    | PRIMUS encoder on [B, 6, 250] + `mmcl` InfoNCE (sum) against    |
|              |                                 |       | 512-d target features, learnable temperature (one view, no      |
|              |                                 |       | NNCLR queue: the issue-9 row, not the full PRIMUS loss)         |
| deepconvlstm | configs/revalexo_contrastive.py | 64    | DeepConvLSTM [B, 120, 42] + projections + InfoNCE (mean) against |
|              |                                 |       | 2048-d precomputed video features (`video_tower='features'`)    |
| audio_mae    | configs/audio_mae.py            | 2     | Audio-MAE ViT-B MAE, 1x1024x128 fbank, mask 0.8, norm-pix       |

The original (issue 25): with PERF_SRC set (the exported upstream sources; PERF_TIMM032 too for Audio-MAE),
PERF_BENCH naming the upstream harness `bench_torch.py` and PERF_TORCH_PY the interpreter of its environment (torch
2.13.0, timm 0.4.5; set up outside this repository as the harness's README says), every row also runs, as workers
`upstream` and `upstream_compile`, the harness's own construction of the original model, loss, optimiser and inputs
for that row (`evimae`, `primus`, `deepconvlstm`, `audiomae`) and its training step, eager and under `torch.compile`;
the headline ratios are JAX / original. Nothing of upstream is imported into this repository: the worker runs this
file under that interpreter and loads the harness from its path. The harness compiles Audio-MAE as
`torch.compile(model)` but then calls `model.forward_encoder` / `forward_decoder` / `forward_loss`, which the compiled
wrapper hands to the uncompiled module, so here those three methods are compiled instead. Differences between the rows:
DeepConvLSTM's JAX row takes 2048-d video features through `feature_projector` (Linear 2048 -> 256, ReLU, dropout)
before `visual_projection` and clips gradients at norm 1 (the config's), where the harness feeds 256-d features
straight to `visual_projection` (~0.01% of the step's FLOPs); the JAX steps also compute the gradient norm (a logged
metric) and Audio-MAE's JAX AdamW decays every parameter where upstream exempts biases and norms (same cost).
`--matmul_precision=bfloat16` times every worker with f32 matmuls computed as one bf16 pass with f32 accumulation
(JAX: config.matmul_precision, which `layers.Linear` honours on CPU; torch: `set_float32_matmul_precision("medium")`,
oneDNN's bf16 path): a separate row, never the fp32 result.
`--reference` adds the test-reference workers (`tests/torch_reference`, below) to such a run; without PERF_SRC they
are the torch side, as before.

JAX runs the system's own train step (`train.make_train_step`: loss, grad, the config's optax optimizer, state
donated); the PRIMUS row swaps in the encoder + InfoNCE loss. torch runs the modules of `tests/torch_reference/`
with the same loss and the config's optimizer (`torch.optim.Adam` / `AdamW`, grad clipping when configured), eager
and under `torch.compile` (of the loss), with `--threads` intra-op threads (2). The references are written for
parity tests, not speed, so torch figures are those of the reference, not of upstream; the Audio-MAE decoder's
per-window Python loop is replaced by `batched_window_attend` (same math, all windows in one batched attention). Each implementation runs in its own subprocess so its peak RSS is its own.

Figures: samples/s = batch / median step time (see Interleaving; `--warmup` untimed steps first); compile s (JAX: lower +
compile; torch.compile: the first step); model FLOPs per step from XLA's cost analysis of the JAX step, lowered with
every scan unrolled (the analysis counts a loop body once); achieved GFLOP/s and MFU against a measured fp32 matmul
peak on this machine; peak RSS of the worker process, for JAX read before the FLOP count's extra lowering. The JAX
worker sets up the process as `python -m imujax.main` does (`imujax.runtime`: huge-page malloc, freed compiler memory
handed back after compiling); the torch workers run in the unchanged environment, as upstream's code would.

Interleaving: this 2-core machine's speed drifts by +-10-25% within minutes, for torch as much as for JAX, so a JAX
run and a torch run a minute apart can disagree on the ratio. So every implementation's worker is started first
(compiled and warmed up, one at a time) and kept alive; then `--rounds` rounds each time a block of `--steps` steps of
every implementation in turn (the order rotating from round to round, `--pause` seconds of idle before each block).
Each block starts with `--block_warmup` untimed steps: the first step after a worker sat idle while the others ran is
slow for every implementation (DeepConvLSTM: JAX 4.1-4.5 s against 2.6-3.0 s, torch eager 3.9-4.1 against 2.8-3.4;
a JAX step after 40 s of idle spent 2.9 s in the kernel against 0.1 s, with no major page faults).
A figure is the median of all of an implementation's timed steps; a ratio is the median of the per-round ratios of
median steps, printed with their range.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import machine  # noqa: E402


def load_config(spec: str):
    import importlib.util
    path, _, variant = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("bench_config", os.path.join(REPO, path))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant or None)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    import jax
    import jax.numpy as jnp
    x = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(x).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(x).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times) / 1e9


# ----------------------------------------------------------------------------------------------------------------------
# Per-system pieces: config adjustments, a random batch, a JAX loss override, the torch reference step.
# ----------------------------------------------------------------------------------------------------------------------


def _normal(rng, *shape):
    import numpy as np
    return rng.normal(size=shape).astype(np.float32)


def evi_mae_batch(config, batch: int, rng) -> dict:
    """The training batch layout (`systems.evi_mae.System.preprocess`): IMU and uint8 video as patch vectors."""
    import numpy as np
    from imujax.systems.evi_mae import System
    s = System(config).sizes
    return {"imu": _normal(rng, batch, s.imu_tokens, s.imu_channels * s.patch ** 2),
            "video": rng.integers(0, 256, (batch, s.video_tokens, 3 * s.tubelet * s.patch ** 2), dtype=np.uint8),
            "label": np.zeros(batch, np.int32)}


def evi_mae_torch(config, data):
    import numpy as np
    import torch
    from imujax import patch_layout
    from imujax.transforms.video import normalize_rgb
    from tests.torch_reference.evi_mae import EVIMAE, RefSizes

    m, c = config.model, config.loss
    sizes = RefSizes(**{k: v for k, v in m.items() if k in RefSizes.__dataclass_fields__})
    model = EVIMAE(sizes).train()
    batch = data["imu"].shape[0]

    def loss_fn(imu, video):
        perm = torch.randperm(batch * m.imu_parts)
        out = model(imu, video, perm, torch.rand(batch, sizes.imu_tokens), torch.rand(batch, sizes.video_tokens),
                    c.imu_mask_ratio, c.video_mask_ratio)
        return c.mae_weight * (out["mae_imu"] + out["mae_video"]) + c.contrast_weight * out["c_loss"] \
            + c.graph_weight * out["g_loss"]

    # The reference takes upstream's layouts: the spectrogram and the normalised channels-first clip.
    imu = patch_layout.imu_from_patches(data["imu"].numpy(), m.imu_channels, m.imu_time, m.imu_freq, m.patch)
    rgb = data["video"].numpy().reshape(batch, sizes.video_tokens, -1, 3)
    video = patch_layout.video_from_patches(normalize_rgb(rgb).reshape(batch, sizes.video_tokens, -1),
                                            m.num_frames, m.img_size, m.tubelet, m.patch)
    return list(model.parameters()), loss_fn, (torch.from_numpy(np.ascontiguousarray(imu)),
                                               torch.from_numpy(np.ascontiguousarray(video)))


def primus_adjust(config) -> None:
    # Encoder + InfoNCE against precomputed 512-d target features: no queue, no second view, no video tower.
    config.model.video_tower = "features"
    config.loss.update(dict(targets=("video",), nnclr=False))


def primus_batch(config, batch: int, rng) -> dict:
    import numpy as np
    return {"imu": _normal(rng, batch, 6, config.data.imu_length),
            "video": _normal(rng, batch, config.model.imu_encoder.size_embeddings),
            "label": np.zeros(batch, np.int32)}


def primus_jax_loss(system):
    from imujax.objectives.infonce import info_nce_symmetric_sum

    def loss(model, batch, rng):
        del rng
        value = info_nce_symmetric_sum(model.imu_encoder(batch["imu"])["mmcl"], batch["video"],
                                       model.mmcl_temperature[...])
        return value, {"loss": value}

    return loss


def primus_torch(config, data):
    import torch
    import torch.nn.functional as F
    from tests.torch_reference.rnn_imu import MW2StackRNNPoolingMultihead

    enc = config.model.imu_encoder
    model = MW2StackRNNPoolingMultihead(enc.input_dim, enc.size_embeddings).train()
    temperature = torch.nn.Parameter(torch.tensor(float(config.loss.mmcl_temperature)))
    labels = torch.arange(data["imu"].shape[0])

    def loss_fn(imu, target):
        logits = F.normalize(model(imu)["mmcl"], dim=-1) @ F.normalize(target, dim=-1).T / temperature
        return F.cross_entropy(logits.T, labels) + F.cross_entropy(logits, labels)

    return list(model.parameters()) + [temperature], loss_fn, (data["imu"], data["video"])


def revalexo_adjust(config) -> None:
    # The torch reference has no frame ViT (upstream's tower is X3D): the video side is precomputed features ->
    # feature_projector (Linear 2048->256, ReLU, Dropout 0.5) -> visual_projection, as in the 'features' tower.
    config.model.video_tower = "features"


def revalexo_batch(config, batch: int, rng) -> dict:
    import numpy as np
    return {"imu": _normal(rng, batch, config.data.imu_length, len(config.data.imu_channels)),
            "video": _normal(rng, batch, config.model.video_feature_dim),
            "label": np.zeros(batch, np.int32)}


def revalexo_torch(config, data):
    import torch
    import torch.nn.functional as F
    from torch import nn
    from tests.torch_reference.rnn_imu import DeepConvLSTM

    m, e = config.model, config.model.imu_encoder
    d_imu = e.feature_dim or e.lstm_units

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.imu_encoder = DeepConvLSTM(len(config.data.imu_channels), e.num_classes, e.conv_kernels,
                                            e.conv_kernel_size, e.lstm_units, d_imu)
            self.feature_projector = nn.Linear(m.video_feature_dim, m.visual_feature_dim)
            self.visual_dropout = nn.Dropout(m.visual_dropout)
            self.imu_projection = nn.Sequential(nn.Linear(d_imu, d_imu), nn.ReLU(), nn.Linear(d_imu, d_imu))
            self.visual_projection = nn.Sequential(nn.Linear(m.visual_feature_dim, m.visual_feature_dim), nn.ReLU(),
                                                   nn.Linear(m.visual_feature_dim, d_imu))
            self.temperature = nn.Parameter(torch.tensor(float(m.temperature)))

        def forward(self, imu, video):
            q = F.normalize(self.imu_projection(self.imu_encoder(imu)), dim=-1)
            k = self.visual_dropout(torch.relu(self.feature_projector(video)))
            k = F.normalize(self.visual_projection(k), dim=-1)
            logits = q @ k.T / self.temperature
            labels = torch.arange(q.shape[0])
            return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))

    model = Model().train()
    return list(model.parameters()), model, (data["imu"], data["video"])


def audio_mae_batch(config, batch: int, rng) -> dict:
    import numpy as np
    m = config.model
    out = {"spec": _normal(rng, batch, m.in_chans, m.img_h, m.img_w), "label": np.zeros(batch, np.int32)}
    if m.video_dim:
        out["video"] = _normal(rng, batch, m.video_dim)
    return out


def batched_window_attend(block, x):
    """`tests/torch_reference/audio_mae.SwinBlock.attend` with every window of every sample in one batched attention
    (the reference loops over samples and windows in Python, for clarity). Same math; used for timing only."""
    import torch

    b, _, c = x.shape
    (h, w), (wh, ww), attn = block.grid, block.window, block.attn
    nh, nw, n, heads = h // wh, w // ww, wh * ww, attn.heads
    x = x.reshape(b, h, w, c)
    if any(block.shift):
        x = torch.roll(x, (-block.shift[0], -block.shift[1]), (1, 2))
    win = x.reshape(b, nh, wh, nw, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, nh, nw, n, c)
    q, k, v = attn.qkv(win).reshape(b, nh, nw, n, 3, heads, c // heads).permute(4, 0, 1, 2, 5, 3, 6)
    cos = (q @ k.transpose(-2, -1)) / (q.norm(dim=-1)[..., :, None] * k.norm(dim=-1)[..., None, :]).clamp(min=1e-6)
    logits = cos / attn.tau.clamp(min=0.01)[:, None, None] + attn.meta_mlp(attn.rel_log).T.reshape(heads, n, n)
    if any(block.shift):
        ids = block.region.reshape(nh, wh, nw, ww).permute(0, 2, 1, 3).reshape(nh, nw, n)
        logits = logits + torch.where(ids[..., :, None] != ids[..., None, :], -100.0, 0.0)[None, :, :, None]
    out = attn.proj((logits.softmax(-1) @ v).transpose(-3, -2).reshape(b, nh, nw, n, c))
    out = out.reshape(b, nh, nw, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    if any(block.shift):
        out = torch.roll(out, block.shift, (1, 2))
    return out.reshape(b, h * w, c)


def audio_mae_torch(config, data):
    import torch
    from tests.torch_reference.audio_mae import RefMAE, RefSizes

    m, c = config.model, config.loss
    if c.mask_2d:
        raise ValueError("audio_mae bench: the torch reference masks 1-D (config.loss.mask_2d must be False)")
    fields = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in m.items()
              if k in RefSizes.__dataclass_fields__}
    model = RefMAE(RefSizes(**fields, swapped_grid=bool(m.pos_grid_swapped))).train()
    if m.decoder_mode == 1:
        for block in model.decoder_blocks:
            block.attend = types.MethodType(batched_window_attend, block)
    tokens = model.num_tokens

    def loss_fn(spec, *video):
        noise = torch.rand(spec.shape[0], tokens)
        latent, mask, restore = model.forward_encoder(spec, noise, c.mask_ratio)
        pred = model.forward_decoder(latent, restore, *video)
        return model.forward_loss(spec, pred, mask)

    inputs = (data["spec"],) + ((data["video"],) if "video" in data else ())
    return [p for p in model.parameters() if p.requires_grad], loss_fn, inputs


@dataclasses.dataclass(frozen=True)
class Bench:
    name: str
    label: str
    config: str
    batch: int
    make_batch: object
    make_torch: object
    adjust: object = None
    jax_loss: object = None


BENCHES = {b.name: b for b in [
    Bench("evi_mae", "EVI-MAE pretraining", "configs/evi_mae.py", 2, evi_mae_batch, evi_mae_torch),
    Bench("primus", "PRIMUS encoder + InfoNCE", "configs/primus.py", 64, primus_batch, primus_torch,
          primus_adjust, primus_jax_loss),
    Bench("deepconvlstm", "DeepConvLSTM contrastive (RevalExo)", "configs/revalexo_contrastive.py", 64,
          revalexo_batch, revalexo_torch, revalexo_adjust),
    Bench("audio_mae", "Audio-MAE ViT-B MAE", "configs/audio_mae.py", 2, audio_mae_batch, audio_mae_torch),
]}
BY_SYSTEM = {"evi_mae": "evi_mae", "primus": "primus", "revalexo_contrastive": "deepconvlstm",
             "himu_mae": "audio_mae"}
ALL = tuple(BENCHES)


def bench_config(bench: Bench, config_spec: str, dtype: str):
    config = load_config(config_spec)
    if bench.adjust is not None:
        bench.adjust(config)
    if dtype:
        config.model.dtype = dtype
    return config


def input_shapes(batch: dict) -> str:
    return ", ".join(f"{k} {list(v.shape)}" for k, v in batch.items() if k != "label")


# ----------------------------------------------------------------------------------------------------------------------
# Workers (one per implementation, in their own process).
# ----------------------------------------------------------------------------------------------------------------------


def model_flops(make_step, *args) -> float:
    """FLOPs of one step from XLA's cost analysis, lowered (not compiled) with every `lax.scan` unrolled: the cost
    analysis counts a while-loop body once, which would under-count the RNN encoders by their sequence length."""
    import jax

    scan = jax.lax.scan

    def unrolled_scan(*a, **kw):
        return scan(*a, **dict(kw, unroll=True))

    jax.lax.scan = unrolled_scan
    try:
        # A fresh function, so no trace cached for the timed (rolled) step is reused.
        cost = jax.jit(make_step()).trace(*args).lower().cost_analysis() or {}
    finally:
        jax.lax.scan = scan
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan")))


class JaxSession:
    """The system's jitted train step, compiled and warmed up; `run` times steps, `finish` reports the rest."""

    def __init__(self, bench: Bench, config, batch_size: int, warmup: int):
        import jax
        import numpy as np
        from imujax import runtime, sharding, systems, train

        config.batch_size = batch_size
        self.config, self.system = config, systems.make_system(config)
        if bench.jax_loss is not None:
            self.system.loss = bench.jax_loss(self.system)
        self.tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 100, 1000))
        mesh = sharding.make_mesh(**config.mesh)
        host_batch = bench.make_batch(config, batch_size, np.random.default_rng(0))
        self.context = contextlib.ExitStack()
        self.context.enter_context(jax.set_mesh(mesh))
        self.context.enter_context(train.matmul_precision(config))
        self.graphdef, self.state, shardings = train.create_state(self.system, config, self.tx, mesh)
        self.batch = sharding.global_batch(host_batch, mesh)
        step = jax.jit(train.make_train_step(self.system, self.graphdef, self.tx, config.seed), donate_argnums=0,
                       out_shardings=(shardings, None))
        start = time.perf_counter()
        self.compiled = step.lower(self.state, self.batch).compile()
        compile_s = time.perf_counter() - start
        runtime.release_free_memory()  # as the training loop does after its first (compiling) step
        self.metrics = None
        self.run(warmup)
        self.peak_at_start = matmul_peak_gflops()  # again at the end: the best of both, as the machine's speed drifts
        self.info = {"impl": f"jax ({config.model.get('dtype', 'float32')})", "compile_s": compile_s,
                     "params": int(sum(x.size for x in jax.tree.leaves(self.state["params"]))),
                     "inputs": input_shapes(host_batch)}

    def run(self, steps: int) -> list[float]:
        import jax
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.state, self.metrics = self.compiled(self.state, self.batch)
            jax.block_until_ready((self.state, self.metrics))
            times.append(time.perf_counter() - start)
        return times

    def finish(self, count_flops: bool) -> dict:
        from imujax import train
        rss_mib = peak_rss_mib()  # of training alone: the FLOP count below lowers a second, unrolled copy
        make_step = lambda: train.make_train_step(self.system, self.graphdef, self.tx, self.config.seed)  # noqa: E731
        flops = model_flops(make_step, self.state, self.batch) if count_flops else float("nan")
        loss = float(self.metrics["loss"]) if "loss" in self.metrics else float("nan")
        self.context.close()
        return dict(self.info, rss_mib=rss_mib, flops=flops,
                    peak_gflops=max(self.peak_at_start, matmul_peak_gflops()), loss=loss)


def torch_optimizer(params, opt):
    import torch
    kwargs = dict(lr=opt.learning_rate, betas=(opt.b1, opt.b2), eps=opt.eps, weight_decay=opt.weight_decay)
    if opt.name == "adam":  # L2 decay added to the gradient, as optax add_decayed_weights before scale_by_adam
        return torch.optim.Adam(params, **kwargs)
    if opt.name == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    raise ValueError(f"config.optimizer.name={opt.name!r}; expected adam or adamw")


class _TimedSteps:
    """Step timing shared by the torch sessions; `step()` runs one training step and returns its loss."""

    def warm_up(self, warmup: int) -> float:
        """Runs `warmup` steps; returns the first one's seconds (under torch.compile, the compile)."""
        start = time.perf_counter()
        self.loss = self.step()
        first_s = time.perf_counter() - start
        self.run(warmup - 1)
        return first_s

    def run(self, steps: int) -> list[float]:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.loss = self.step()
            times.append(time.perf_counter() - start)
        return times


class TorchSession(_TimedSteps):
    """The torch reference's train step (eager or `torch.compile` of the loss), warmed up; same interface."""

    def __init__(self, bench: Bench, config, batch_size: int, warmup: int, compile_model: bool, threads: int):
        import numpy as np
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        data = {k: torch.from_numpy(v) for k, v in bench.make_batch(config, batch_size, np.random.default_rng(0)).items()}
        self.params, loss_fn, self.inputs = bench.make_torch(config, data)
        self.opt = torch_optimizer(self.params, config.optimizer)
        self.clip = config.optimizer.get("grad_clip_norm")
        self.fn = torch.compile(loss_fn) if compile_model else loss_fn
        first_s = self.warm_up(warmup)
        self.info = {"impl": "torch.compile" if compile_model else "torch eager",
                     "compile_s": first_s if compile_model else float("nan"), "threads": torch.get_num_threads(),
                     "params": int(sum(p.numel() for p in self.params))}

    def step(self):
        import torch
        self.opt.zero_grad(set_to_none=True)
        loss = self.fn(*self.inputs)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return loss

    def finish(self, count_flops: bool) -> dict:
        return dict(self.info, rss_mib=peak_rss_mib(), loss=float(self.loss.detach()))


UPSTREAM_CASE = {"evi_mae": "evimae", "primus": "primus", "deepconvlstm": "deepconvlstm", "audio_mae": "audiomae"}


def load_upstream_bench(path: str):
    """The upstream harness (`bench_torch.py`, kept outside this repository; its set-up exports the original sources
    to $PERF_SRC), imported from its path."""
    import importlib.util
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"upstream harness {path!r} not found: set PERF_BENCH or --upstream_bench")
    spec = importlib.util.spec_from_file_location("upstream_bench_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class UpstreamSession(_TimedSteps):
    """The ORIGINAL upstream model and training step of a row, as `bench_torch.py` builds it (its model construction,
    loss, optimiser and inputs; eager or `torch.compile`), warmed up; same interface as the other sessions. Runs under
    the upstream environment's interpreter, so it imports nothing from imujax."""

    def __init__(self, row: str, batch_size: int, warmup: int, compile_model: bool, threads: int, harness: str):
        import torch

        bench = load_upstream_bench(harness)
        torch.set_num_threads(threads)
        case = UPSTREAM_CASE[row]
        # bench_torch compiles Audio-MAE as torch.compile(model) but then calls model.forward_encoder / _decoder /
        # _loss, which the compiled wrapper hands to the uncompiled module: compile those three methods instead.
        compile_methods = compile_model and case == "audiomae"
        args = argparse.Namespace(compile=compile_model and not compile_methods, T=None, lstm_units=None)
        self.step_fn, _, model, self.meta = bench.BUILDERS[case](torch, batch_size, args)
        if compile_methods:
            for name in ("forward_encoder", "forward_decoder", "forward_loss"):
                setattr(model, name, torch.compile(getattr(model, name)))
        self.phases = bench.PHASES
        first_s = self.warm_up(warmup)
        self.info = {"impl": "original torch.compile" if compile_model else "original eager",
                     "compile_s": first_s if compile_model else float("nan"), "threads": torch.get_num_threads(),
                     "params": int(self.meta.get("n_params", 0)), "model": self.meta.get("model", ""),
                     "inputs": ", ".join(f"{k} {v}" for k, v in self.meta.get("inputs", {}).items() if k != "dtype"),
                     "torch": torch.__version__}

    def step(self) -> float:
        return self.step_fn()  # float(loss): the step has finished

    def run(self, steps: int) -> list[float]:
        del self.phases[:]  # the harness's per-phase times, kept for the timed steps only
        return super().run(steps)

    def finish(self, count_flops: bool) -> dict:
        phases = {name: statistics.median(p[i] for p in self.phases) for i, name in
                  enumerate(("forward_loss_s", "backward_s", "optimizer_s"))} if self.phases else {}
        return dict(self.info, rss_mib=peak_rss_mib(), loss=float(self.loss), **phases)


def serve(session) -> None:
    """Worker loop on stdin/stdout, one JSON line per answer: 'run N' -> step times, 'finish [flops]' -> the report."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "run":
            print(json.dumps({"times": session.run(int(rest[0]))}), flush=True)
        elif command == "finish":
            print(json.dumps(session.finish(count_flops="flops" in rest)), flush=True)
            return
        else:
            raise ValueError(f"benchmark worker: unknown command {line!r}")


# ----------------------------------------------------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------------------------------------------------


class Worker:
    """One implementation's worker process, compiled and warmed up before the first timed block."""

    def __init__(self, row: str, config_spec: str, impl: str, batch: int, args):
        python = args.torch_python if impl.startswith("upstream") else sys.executable
        cmd = [python, __file__, f"--worker={impl}", f"--bench={row}", f"--config={config_spec}",
               f"--batch={batch}", f"--warmup={args.warmup}", f"--threads={args.threads}"]
        cmd += [f"--dtype={args.dtype}"] if args.dtype else []
        cmd += [f"--matmul_precision={args.matmul_precision}"]
        cmd += [f"--upstream_bench={args.upstream_bench}"] if impl.startswith("upstream") else []
        self.row, self.impl = row, impl
        self.stderr = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty worker cannot fill it and block
        print(f"[{row}] {impl}: starting", file=sys.stderr, flush=True)
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        self.ask(None)  # wait for "ready"

    def ask(self, command: str | None) -> dict:
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.proc.wait()
        self.stderr.seek(0)
        raise RuntimeError(f"{self.row}: the {self.impl} worker exited with status {self.proc.returncode}:\n"
                           f"{self.stderr.read()[-4000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()


def combine(times: dict[str, list[list[float]]], reports: dict[str, dict]) -> dict[str, dict]:
    """Per implementation: the median of all its timed steps, and for torch the per-round speed-ups of JAX
    (median step of the implementation in that round / JAX's median step in the same round)."""
    round_medians = {impl: [statistics.median(r) for r in rounds] for impl, rounds in times.items()}
    out = {}
    for impl, rounds in times.items():
        out[impl] = dict(reports[impl], step_s=statistics.median(t for r in rounds for t in r), rounds=len(rounds),
                         round_step_s=round_medians[impl])
        if impl != "jax" and "jax" in times:
            out[impl]["ratios"] = [m / j for m, j in zip(round_medians[impl], round_medians["jax"])]
    return out


def implementations(args, name: str, config_spec: str) -> list[str]:
    """jax, then the original upstream step (eager, torch.compile) when its sources are set up and the row runs the
    released sizes, else (or with --reference as well) the test reference (eager, torch.compile)."""
    if args.jax_only:
        return ["jax"]
    use_upstream = bool(os.environ.get("PERF_SRC")) and not args.no_upstream and config_spec == BENCHES[name].config
    impls = ["jax"]
    if use_upstream:
        impls += ["upstream"] + ([] if args.no_compile else ["upstream_compile"])
    if args.reference or not use_upstream:
        impls += ["torch"] + ([] if args.no_compile else ["torch_compile"])
    return impls


def run_row(name: str, config_spec: str, args) -> dict:
    impls = implementations(args, name, config_spec)
    batch = args.batch or BENCHES[name].batch

    def left_out(impl: str, error: RuntimeError) -> None:
        """A failed torch worker is left out of the row; without JAX there is no row."""
        if impl == "jax":
            sys.exit(str(error))
        print(f"{error}\n({impl} left out)", file=sys.stderr)

    workers = {}
    try:
        for impl in impls:  # one at a time, so compiles do not overlap
            try:
                workers[impl] = Worker(name, config_spec, impl, batch, args)
            except RuntimeError as error:
                left_out(impl, error)
        times = {impl: [] for impl in workers}
        live = list(workers)
        for index in range(args.rounds):
            for impl in live[index % len(live):] + live[:index % len(live)]:
                time.sleep(args.pause)  # let the previous worker's threads stop spinning
                try:
                    block = workers[impl].ask(f"run {args.block_warmup + args.steps}")["times"]
                except RuntimeError as error:
                    left_out(impl, error)
                    live.remove(impl)
                    del times[impl]
                    continue
                times[impl].append(block[args.block_warmup:])
                print(f"[{name}] round {index + 1} {impl}: median {statistics.median(times[impl][-1]):.4f} s "
                      f"(untimed {' '.join(f'{t:.4f}' for t in block[:args.block_warmup])}; timed "
                      f"{' '.join(f'{t:.4f}' for t in times[impl][-1])})", file=sys.stderr, flush=True)
        reports = {impl: workers[impl].ask("finish flops" if impl == "jax" else "finish") for impl in live}
    finally:
        for worker in workers.values():
            worker.close()
    result = combine(times, reports)
    for impl, report in result.items():
        print(f"[{name}] {impl}: {json.dumps(report)}", file=sys.stderr, flush=True)
    return {"name": name, "config": config_spec, "batch": batch, **result}


def _fmt(x: float, spec: str = ".2f") -> str:
    return "—" if x is None or x != x else format(x, spec)


def _ratio(row: dict, worker: str) -> str:
    """Median of the per-round speed-ups, with their range when there was more than one round."""
    ratios = row.get(worker, {}).get("ratios") or []
    if not ratios:
        return "—"
    median = _fmt(statistics.median(ratios))
    return median if len(ratios) == 1 else f"{median} ({_fmt(min(ratios))}-{_fmt(max(ratios))})"


IMPL_LABEL = {"jax": "JAX", "upstream": "original eager", "upstream_compile": "original torch.compile",
              "torch": "test-reference eager", "torch_compile": "test-reference torch.compile"}


def print_table(rows: list[dict], threads: int) -> None:
    peak = max(row["jax"]["peak_gflops"] for row in rows)  # best of the per-row measurements
    rounds = max(row["jax"].get("rounds", 1) for row in rows)
    others = [k for k in IMPL_LABEL if k != "jax" and any(k in row for row in rows)]
    print(f"{machine.line()}; fp32 matmul peak {peak:.0f} GFLOP/s (JAX, 2048^2, best of {2 * len(rows)} "
          f"measurements), torch {threads} threads; samples/s = batch / median step s (median over {rounds} "
          f"interleaved round(s)); ratios: median of the per-round ratios (range); MFU = GFLOP/s / peak")
    head = ["system", "batch", "inputs (JAX)", "JAX samples/s"] + [f"{IMPL_LABEL[k]} samples/s" for k in others] + \
        [f"JAX / {IMPL_LABEL[k]}" for k in others] + \
        ["compile s (JAX" + "".join(f" / {IMPL_LABEL[k]}" for k in others if k.endswith("compile")) + ")",
         "GFLOP/step", "GFLOP/s", "MFU", "peak RSS MiB (JAX" + "".join(f" / {IMPL_LABEL[k]}" for k in others) + ")"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        b, jax_r = row["batch"], row["jax"]
        rate = lambda k: b / row[k]["step_s"] if k in row else float("nan")  # noqa: E731
        flops = jax_r["flops"] / 1e9
        gflops = flops / jax_r["step_s"]
        rss = " / ".join(_fmt(row[k]["rss_mib"], ".0f") if k in row else "—" for k in ["jax"] + others)
        compile_s = " / ".join([f"{jax_r['compile_s']:.1f}"] + [_fmt(row.get(k, {}).get("compile_s"), ".1f")
                                                                 for k in others if k.endswith("compile")])
        cells = [f"{BENCHES[row['name']].label} (`{row['config']}`)", str(b), jax_r["inputs"], _fmt(rate("jax"), ".3g")]
        cells += [_fmt(rate(k), ".3g") for k in others] + [_ratio(row, k) for k in others]
        cells += [compile_s, f"{flops:.1f}", f"{gflops:.1f}", f"{gflops / peak:.1%}", rss]
        print("| " + " | ".join(cells) + " |")
    for row in rows:
        for k in others:
            if k.startswith("upstream") and k in row:
                print(f"{row['name']} {IMPL_LABEL[k]}: {row[k].get('model', '')}; inputs {row[k].get('inputs', '')}")
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="", help="config[:variant]; picks the row of its system")
    parser.add_argument("--bench", default="", help=f"row by name: {', '.join(BENCHES)}")
    parser.add_argument("--all", action="store_true", help=f"run the rows {', '.join(ALL)} in sequence")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    parser.add_argument("--batch", type=int, default=0, help="default: the row's batch")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per implementation and round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (torch.compile: >= 1)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of timed blocks, interleaving the implementations")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds of idle before each timed block")
    parser.add_argument("--block_warmup", type=int, default=1,
                        help="untimed steps at the start of each block (the first step after idling is slow)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--dtype", default="", help="override config.model.dtype (JAX side)")
    parser.add_argument("--matmul_precision", default="default", choices=("default", "bfloat16"),
                        help="f32 matmuls as one bf16 pass with f32 accumulation: JAX config.matmul_precision, "
                             "torch set_float32_matmul_precision('medium') (a separate row, not the fp32 result)")
    parser.add_argument("--no_compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--jax_only", action="store_true", help="skip every torch worker")
    parser.add_argument("--no_upstream", action="store_true", help="skip the original upstream step even if PERF_SRC is set")
    parser.add_argument("--reference", action="store_true",
                        help="also time the test reference (tests/torch_reference) when the original is timed")
    parser.add_argument("--upstream_bench", default=os.environ.get("PERF_BENCH", ""),
                        help="path of the upstream harness bench_torch.py (default $PERF_BENCH)")
    parser.add_argument("--torch_python", default=os.environ.get("PERF_TORCH_PY", sys.executable),
                        help="interpreter of the upstream environment (default $PERF_TORCH_PY, else this one)")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.warmup = max(args.warmup, 1)
    if args.rounds < 1 or args.block_warmup < 0:
        parser.error(f"--rounds={args.rounds}, --block_warmup={args.block_warmup}; expected >= 1 and >= 0")

    if args.list:
        for b in BENCHES.values():
            print(f"{b.name:14s} {b.config:34s} batch {b.batch:3d}  {b.label}")
        return

    if args.worker and args.worker != "jax" and args.matmul_precision == "bfloat16":
        import torch
        torch.set_float32_matmul_precision("medium")  # oneDNN: f32 matmuls with bf16 operands, f32 accumulation
    if args.worker.startswith("upstream"):  # under the upstream environment's interpreter: no imujax, no config
        serve(UpstreamSession(args.bench, args.batch or BENCHES[args.bench].batch, args.warmup,
                              compile_model=args.worker == "upstream_compile", threads=args.threads,
                              harness=args.upstream_bench))
        return
    if args.worker:
        if args.worker == "jax":  # run as `python -m imujax.main` does; torch runs as upstream's code would
            from imujax import runtime
            runtime.use_huge_pages()
        bench = BENCHES[args.bench]
        config = bench_config(bench, args.config or bench.config, args.dtype)
        config.matmul_precision = args.matmul_precision
        batch = args.batch or bench.batch
        if args.worker == "jax":
            session = JaxSession(bench, config, batch, args.warmup)
        else:
            session = TorchSession(bench, config, batch, args.warmup, compile_model=args.worker == "torch_compile",
                                   threads=args.threads)
        serve(session)
        return

    if args.all:
        todo = [(name, BENCHES[name].config) for name in ALL]
    elif args.bench:
        if args.bench not in BENCHES:
            parser.error(f"--bench={args.bench!r}; known: {', '.join(BENCHES)}")
        todo = [(args.bench, args.config or BENCHES[args.bench].config)]
    else:
        spec = args.config or "configs/evi_mae.py"
        system = load_config(spec).system
        if system not in BY_SYSTEM:
            parser.error(f"{spec}: system {system!r} has no benchmark row (known: {', '.join(BY_SYSTEM)})")
        todo = [(BY_SYSTEM[system], spec)]
    rows = [run_row(name, spec, args) for name, spec in todo]
    print_table(rows, args.threads)
    if args.matmul_precision != "default":
        print(f"matmul precision {args.matmul_precision}: f32 matmuls with bf16 operands and f32 accumulation (JAX "
              f"config.matmul_precision, torch set_float32_matmul_precision('medium')); not the fp32 result")


if __name__ == "__main__":
    main()
