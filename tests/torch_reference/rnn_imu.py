"""PyTorch reference encoders with the upstream state_dict layouts (written from the spec, for parity tests).

`MW2StackRNNPooling` / `MW2StackRNNPoolingMultihead` follow shared/specs/rnn_imu_encoders.md §1-3 (keys `net.*` /
`backbone.*`, `ssl_head`, `mmcl_head`); `DeepConvLSTM` follows shared/specs/evi_mae.md §4 (keys `conv1..4`, `lstm`,
`classifier.heads.0.1`, `feature_projector`).
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """Conv1d (dilation 2, no bias, no padding) then MaxPool1d(3) or AdaptiveAvgPool1d(pooled_length), as `.net`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: str = "max",
                 pooled_length: int = 32):
        super().__init__()
        pool_layer = nn.MaxPool1d(kernel_size=3) if pool == "max" else nn.AdaptiveAvgPool1d(pooled_length)
        self.net = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, kernel_size=kernel_size, dilation=2, bias=False), pool_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mw2_sequential(input_dim: int, size_embeddings: int, last_pool: str, pooled_length: int) -> nn.Sequential:
    return nn.Sequential(
        nn.GroupNorm(2, 6),
        Block(6, input_dim, 10),
        Block(input_dim, input_dim, 5),
        Block(input_dim, input_dim, 5, pool=last_pool, pooled_length=pooled_length),
        nn.GroupNorm(4, input_dim),
        nn.GRU(input_size=input_dim, hidden_size=size_embeddings, batch_first=True),
    )


class MW2StackRNNPooling(nn.Module):
    """IMU2CLIP: max-pool everywhere; forward returns the final GRU hidden state."""

    def __init__(self, input_dim: int = 32, size_embeddings: int = 512, last_pool: str = "max",
                 pooled_length: int = 32):
        super().__init__()
        self.net = mw2_sequential(input_dim, size_embeddings, last_pool, pooled_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[1][0]


class MW2StackRNNPoolingMultihead(nn.Module):
    """PRIMUS: adaptive pool in block 3, plus single-Linear `ssl_head` and `mmcl_head`."""

    def __init__(self, input_dim: int = 32, size_embeddings: int = 512, pooled_length: int = 32):
        super().__init__()
        self.backbone = mw2_sequential(input_dim, size_embeddings, "adaptive", pooled_length)
        self.ssl_head = nn.Linear(size_embeddings, size_embeddings)
        self.mmcl_head = nn.Linear(size_embeddings, size_embeddings)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.backbone(x)[1][0]
        return {"emb": emb, "ssl": self.ssl_head(emb), "mmcl": self.mmcl_head(emb)}


class DeepConvLSTM(nn.Module):
    """RevalExo DeepConvLSTM (single horizon, no shared classifier layers), `encode_features` as forward."""

    def __init__(self, channels: int = 42, num_classes: int = 11, conv_kernels: int = 64, conv_kernel_size: int = 11,
                 lstm_units: int = 1024, feature_dim: int = 256, lstm_layers: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(1, conv_kernels, (conv_kernel_size, 1))
        self.conv2 = nn.Conv2d(conv_kernels, conv_kernels, (conv_kernel_size, 1))
        self.conv3 = nn.Conv2d(conv_kernels, conv_kernels, (conv_kernel_size, 1))
        self.conv4 = nn.Conv2d(conv_kernels, conv_kernels, (conv_kernel_size, 1))
        self.lstm = nn.LSTM(channels * conv_kernels, lstm_units, num_layers=lstm_layers, batch_first=True)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Module()
        self.classifier.heads = nn.ModuleList([nn.Sequential(nn.Dropout(0.5), nn.Linear(lstm_units, num_classes))])
        self.feature_projector = (nn.Linear(lstm_units, feature_dim) if feature_dim != lstm_units else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            h = torch.relu(conv(h))
        h = h.permute(0, 2, 1, 3)
        h = h.reshape(h.shape[0], h.shape[1], -1)
        out, _ = self.lstm(h)
        return self.feature_projector(out[:, -1, :])
