"""Train-step throughput of a system in JAX and, in the same run, of its PyTorch reference on identical shapes.

  python benchmarks/train_step.py --all [--steps=5] [--no_compile]          # the four issue-9 rows, one table
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

JAX runs the system's own train step (`train.make_train_step`: loss, grad, the config's optax optimizer, state
donated); the PRIMUS row swaps in the encoder + InfoNCE loss. torch runs the modules of `tests/torch_reference/`
with the same loss and the config's optimizer (`torch.optim.Adam` / `AdamW`, grad clipping when configured), eager
and under `torch.compile` (of the loss), with `--threads` intra-op threads (2). The references are written for
parity tests, not speed, so torch figures are those of the reference, not of upstream; the Audio-MAE decoder's
per-window Python loop is replaced by `batched_window_attend` (same math, all windows in one batched attention). Each implementation runs in its own subprocess so its peak RSS is its own.

Figures: samples/s = batch / median step time over `--steps` timed steps after `--warmup`; compile s (JAX: lower +
compile; torch.compile: the first step); model FLOPs per step from XLA's cost analysis of the JAX step, lowered with
every scan unrolled (the analysis counts a loop body once); achieved GFLOP/s and MFU against a measured fp32 matmul
peak on this machine; peak RSS of the worker process, for JAX read before the FLOP count's extra lowering. The JAX
worker sets up the process as `python -m imujax.main` does (`imujax.runtime`: huge-page malloc, freed compiler memory
handed back after compiling); the torch workers run in the unchanged environment, as upstream's code would.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def load_config(spec: str):
    import importlib.util
    path, _, variant = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("bench_config", os.path.join(REPO, path))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant or None)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
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
    from imujax.transforms import patches as patch_layout
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


def bench_jax(bench: Bench, config, batch_size: int, steps: int, warmup: int) -> dict:
    import jax
    import numpy as np
    from imujax import runtime, sharding, systems, train

    config.batch_size = batch_size
    system = systems.make_system(config)
    if bench.jax_loss is not None:
        system.loss = bench.jax_loss(system)
    tx = train.make_optimizer(config.optimizer, train.make_schedule(config.optimizer, 100, 1000))
    mesh = sharding.make_mesh(**config.mesh)
    host_batch = bench.make_batch(config, batch_size, np.random.default_rng(0))
    with jax.set_mesh(mesh):
        graphdef, state, shardings = train.create_state(system, config, tx, mesh)
        params = sum(x.size for x in jax.tree.leaves(state["params"]))
        batch = sharding.global_batch(host_batch, mesh)
        step = jax.jit(train.make_train_step(system, graphdef, tx, config.seed), donate_argnums=0,
                       out_shardings=(shardings, None))
        start = time.perf_counter()
        compiled = step.lower(state, batch).compile()
        compile_s = time.perf_counter() - start
        runtime.release_free_memory()  # as the training loop does after its first (compiling) step
        times = []
        for i in range(warmup + steps):
            start = time.perf_counter()
            state, metrics = compiled(state, batch)
            jax.block_until_ready((state, metrics))
            if i >= warmup:
                times.append(time.perf_counter() - start)
        loss = float(metrics["loss"]) if "loss" in metrics else float("nan")
        rss_mib = peak_rss_mib()  # of training alone: the FLOP count below lowers a second, unrolled copy
        flops = model_flops(lambda: train.make_train_step(system, graphdef, tx, config.seed), state, batch)
    return {"impl": f"jax ({config.model.get('dtype', 'float32')})", "step_s": statistics.median(times),
            "compile_s": compile_s, "flops": flops, "peak_gflops": matmul_peak_gflops(), "rss_mib": rss_mib,
            "params": int(params), "loss": loss, "inputs": input_shapes(host_batch)}


def torch_optimizer(params, opt):
    import torch
    kwargs = dict(lr=opt.learning_rate, betas=(opt.b1, opt.b2), eps=opt.eps, weight_decay=opt.weight_decay)
    if opt.name == "adam":  # L2 decay added to the gradient, as optax add_decayed_weights before scale_by_adam
        return torch.optim.Adam(params, **kwargs)
    if opt.name == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    raise ValueError(f"config.optimizer.name={opt.name!r}; expected adam or adamw")


def bench_torch(bench: Bench, config, batch_size: int, steps: int, warmup: int, compile_model: bool,
                threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = {k: torch.from_numpy(v) for k, v in bench.make_batch(config, batch_size, np.random.default_rng(0)).items()}
    params, loss_fn, inputs = bench.make_torch(config, data)
    opt = torch_optimizer(params, config.optimizer)
    clip = config.optimizer.get("grad_clip_norm")
    fn = torch.compile(loss_fn) if compile_model else loss_fn

    def step():
        opt.zero_grad(set_to_none=True)
        loss = fn(*inputs)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        return loss

    start = time.perf_counter()
    loss = step()
    first_s = time.perf_counter() - start
    times = []
    for i in range(max(warmup - 1, 0) + steps):
        start = time.perf_counter()
        loss = step()
        if i >= warmup - 1:
            times.append(time.perf_counter() - start)
    return {"impl": "torch.compile" if compile_model else "torch eager", "step_s": statistics.median(times),
            "compile_s": first_s if compile_model else float("nan"), "rss_mib": peak_rss_mib(),
            "threads": torch.get_num_threads(), "loss": float(loss.detach()),
            "params": int(sum(p.numel() for p in params))}


# ----------------------------------------------------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------------------------------------------------


def run_row(name: str, config_spec: str, args) -> dict:
    workers = ["jax"] + ([] if args.jax_only else ["torch"] + ([] if args.no_compile else ["torch_compile"]))
    batch = args.batch or BENCHES[name].batch
    results = {}
    for worker in workers:
        cmd = [sys.executable, __file__, f"--worker={worker}", f"--bench={name}", f"--config={config_spec}",
               f"--batch={batch}", f"--steps={args.steps}", f"--warmup={args.warmup}", f"--threads={args.threads}"]
        cmd += [f"--dtype={args.dtype}"] if args.dtype else []
        print(f"[{name}] {worker} ...", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if out.returncode:
            if worker == "jax":
                sys.exit(f"{name}: {worker} failed:\n{out.stderr[-4000:]}")
            print(f"{name}: {worker} failed (left out):\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        results[worker] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"[{name}] {worker}: {json.dumps(results[worker])}", file=sys.stderr, flush=True)
    return {"name": name, "config": config_spec, "batch": batch, **results}


def _fmt(x: float, spec: str = ".2f") -> str:
    return "—" if x is None or x != x else format(x, spec)


def print_table(rows: list[dict], threads: int) -> None:
    peak = max(row["jax"]["peak_gflops"] for row in rows)  # best of the per-row measurements
    print(f"{os.cpu_count()} CPU cores, fp32 matmul peak {peak:.0f} GFLOP/s (JAX, 2048^2, best of "
          f"{len(rows)}), torch {threads} threads; samples/s = batch / median step s; MFU = GFLOP/s / peak")
    print("| system | batch | inputs | JAX samples/s | torch eager | torch.compile | JAX / eager | JAX / compile | "
          "compile s (JAX / torch.compile) | GFLOP/step | GFLOP/s | MFU | peak RSS MiB (JAX / eager / compile) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        b, jax_r = row["batch"], row["jax"]
        rate = {k: b / row[k]["step_s"] if k in row else float("nan") for k in ("jax", "torch", "torch_compile")}
        flops = jax_r["flops"] / 1e9
        gflops = flops / jax_r["step_s"]
        rss = " / ".join(_fmt(row[k]["rss_mib"], ".0f") if k in row else "—" for k in ("jax", "torch", "torch_compile"))
        compile_s = f"{jax_r['compile_s']:.1f} / {_fmt(row.get('torch_compile', {}).get('compile_s'), '.1f')}"
        print(f"| {BENCHES[row['name']].label} (`{row['config']}`) | {b} | {jax_r['inputs']} | {_fmt(rate['jax'], '.3g')} | "
              f"{_fmt(rate['torch'], '.3g')} | {_fmt(rate['torch_compile'], '.3g')} | "
              f"{_fmt(rate['jax'] / rate['torch'])} | {_fmt(rate['jax'] / rate['torch_compile'])} | {compile_s} | "
              f"{flops:.1f} | {gflops:.1f} | {gflops / peak:.1%} | {rss} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="", help="config[:variant]; picks the row of its system")
    parser.add_argument("--bench", default="", help=f"row by name: {', '.join(BENCHES)}")
    parser.add_argument("--all", action="store_true", help=f"run the rows {', '.join(ALL)} in sequence")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    parser.add_argument("--batch", type=int, default=0, help="default: the row's batch")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (the figure is their median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (torch.compile: >= 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--dtype", default="", help="override config.model.dtype (JAX side)")
    parser.add_argument("--no_compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--jax_only", action="store_true", help="skip the torch reference")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.warmup = max(args.warmup, 1)

    if args.list:
        for b in BENCHES.values():
            print(f"{b.name:14s} {b.config:34s} batch {b.batch:3d}  {b.label}")
        return

    if args.worker:
        if args.worker == "jax":  # run as `python -m imujax.main` does; torch runs as upstream's code would
            from imujax import runtime
            runtime.use_huge_pages()
        bench = BENCHES[args.bench]
        config = bench_config(bench, args.config or bench.config, args.dtype)
        batch = args.batch or bench.batch
        if args.worker == "jax":
            result = bench_jax(bench, config, batch, args.steps, args.warmup)
        else:
            result = bench_torch(bench, config, batch, args.steps, args.warmup,
                                 compile_model=args.worker == "torch_compile", threads=args.threads)
        print(json.dumps(result))
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


if __name__ == "__main__":
    main()
