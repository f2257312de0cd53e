"""Seeded fuzz of the checkpoint reader: mutants of valid checkpoints of every family's layout (bit flips,
truncation, opcode insertion/deletion, memo indices, length and int fields, storage record lengths), loaded in a
subprocess under an address-space limit with a per-case timeout. Every outcome must be a load or a named error.

CI runs IMUJAX_FUZZ_CASES (default 600) cases with a fixed seed; set IMUJAX_FUZZ_SEED / _CASES for longer runs.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys

import numpy as np
import torch

from imujax.bridges.torch import export
from tests.torch_reference import rnn_imu

WORKER = os.path.join(os.path.dirname(__file__), "hostile_reader_fuzz_worker.py")


def _family_checkpoints(root) -> list[str]:
    """Small files with the layouts the converters read (DeepConvLSTM/IMU2CLIP state_dict, PRIMUS Lightning, TSFM
    best.pt, EVI-MAE `module.` keys with views, a pickled nn.Module, the legacy stream, HIMU-MAE safetensors)."""
    torch.manual_seed(0)
    paths = []

    def save(name, obj, **kwargs):
        paths.append(str(root / name))
        torch.save(obj, paths[-1], **kwargs)

    conv = rnn_imu.DeepConvLSTM(channels=3, num_classes=2, conv_kernels=2, conv_kernel_size=3, lstm_units=4,
                                feature_dim=3)
    save("deepconvlstm.pt", conv.state_dict())
    lin = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    opt = torch.optim.AdamW(lin.parameters())
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    save("primus.ckpt", {"epoch": 1, "state_dict": collections.OrderedDict(
        (f"model.{k}", v) for k, v in lin.state_dict().items()), "optimizer_states": [opt.state_dict()],
        "hyper_parameters": {"args": argparse.Namespace(lr=0.1), "arr": np.arange(3), "s": np.float32(2)}})
    save("tsfm_best.pt", {"model_state_dict": lin.state_dict(), "label_bank_state_dict": {"emb": torch.ones(2, 2)},
                          "criterion_state_dict": {"t": torch.tensor(0.07)}, "epoch": 3})
    base = torch.randn(4, 3)
    save("evi_mae.pth", {"module.w": base, "module.t": base.t(), "module.row": base[1],
                         "module.e": torch.randn(1, 3).expand(2, 3), "module.b": torch.randn(2).bfloat16(),
                         "module.c": torch.randn(2, dtype=torch.complex64).conj(), "module.i": torch.arange(3)})
    save("module.pt", lin)
    save("legacy.pth", {"w": base, "v": base[:, 1], "i": torch.arange(2)}, _use_new_zipfile_serialization=False)
    paths.append(str(root / "himu_mae.safetensors"))
    export.write_safetensors(paths[-1], {"a": np.ones((2, 3), np.float32), "b": np.arange(4, dtype=np.int64)},
                             metadata={"format": "pt"})
    return paths


def test_fuzz_mutated_checkpoints_load_or_fail_by_name(tmp_path):
    seed = int(os.environ.get("IMUJAX_FUZZ_SEED", "2126"))
    cases = int(os.environ.get("IMUJAX_FUZZ_CASES", "600"))
    files = _family_checkpoints(tmp_path)
    # The default budget (2 x file + 256 MiB) plus the interpreter with numpy: a blow-up past it is a MemoryError.
    as_limit = 1536 << 20
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, WORKER, str(seed), str(cases), str(as_limit), *files],
                         capture_output=True, text=True, timeout=300, env=env)
    last_case = res.stderr.strip().splitlines()[-1:] if res.stderr else []
    assert res.returncode == 0, f"worker died (rc={res.returncode}) at {last_case}: {res.stderr[-2000:]}"
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert not report["failures"], report["failures"][:10]
    outcomes = report["outcomes"]
    assert sum(outcomes.values()) == cases
    # the mutants exercise both paths: some still load, many are refused by name
    assert outcomes.get("loaded", 0) > cases // 20 and outcomes.get("CheckpointFormatError", 0) > cases // 5, outcomes
