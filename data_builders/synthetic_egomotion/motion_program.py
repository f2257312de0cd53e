"""Motion programs: joint-angle trajectories composed of primitive segments, evaluated exactly and in batch.

A segment holds, for every degree of freedom d, a mean posture and up to H harmonics of one fundamental
frequency: q_d = mean_d + env(t) sum_h A_hd sin(h theta(t) + phi_hd). The phase theta is frequency modulated
(smooth speed variation) and env is a slow amplitude modulation. Consecutive segments cross-fade with
minimum-jerk weights, which also makes posture transitions (stand -> sit, sit -> lie, ...) smooth, and gives an
elevator ride its start and stop (a segment's vertical `climb` speed fading in and out). Root travel is the exact
integral of the weighted segment speeds, so positions, velocities and accelerations are all
closed-form. Jets here are arrays with a leading axis of 3: (value, d/dt, d2/dt2).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .body import DOFS

H = 3  # harmonics per segment
F = 2  # idle-fidget layers (slow random periodic signals on every joint)


@dataclasses.dataclass
class Segment:
    """One primitive: posture, oscillation and travel. Angles in rad, lengths in m, speeds in m/s."""

    activity: str
    phrase: str
    mean: np.ndarray  # [D]
    amp: np.ndarray  # [H, D]
    phase: np.ndarray  # [H, D]
    freq: float = 0.5  # fundamental, Hz
    speed: float = 0.0
    slope: float = 0.0  # rise per metre travelled
    turn: float = 0.0  # heading change on entering this segment
    climb: float = 0.0  # vertical speed without travel (an elevator ride), m/s

    def set(self, dof: str, mean: float | None = None, *harmonics: tuple[int, float, float]) -> Segment:
        """Set a DOF's mean and/or harmonics given as (h, amplitude, phase) with h = 1..H."""
        d = DOFS.index(dof)
        if mean is not None:
            self.mean[d] = mean
        for h, a, p in harmonics:
            self.amp[h - 1, d], self.phase[h - 1, d] = a, p
        return self


@dataclasses.dataclass(frozen=True)
class Program:
    """K segments for each of B clips (shorter programs repeat their last segment), as arrays."""

    mean: np.ndarray  # [B, K, D]
    amp_sin: np.ndarray  # [B, K, H, D]  A cos(phi): coefficient of sin(h theta)
    amp_cos: np.ndarray  # [B, K, H, D]  A sin(phi): coefficient of cos(h theta)
    freq: np.ndarray  # [B, K]
    theta0: np.ndarray  # [B, K]
    fm_depth: np.ndarray  # [B, K] relative frequency variation
    fm_rate: np.ndarray  # [B, K] Hz
    fm_phase: np.ndarray  # [B, K]
    env_depth: np.ndarray  # [B, K]
    env_rate: np.ndarray  # [B, K]
    env_phase: np.ndarray  # [B, K]
    speed: np.ndarray  # [B, K]
    slope: np.ndarray  # [B, K]
    climb: np.ndarray  # [B, K] vertical speed independent of travel, m/s
    heading: np.ndarray  # [B, K] absolute heading of each segment
    centre: np.ndarray  # [B, K - 1] cross-fade centres, s
    width: np.ndarray  # [B, K - 1] cross-fade durations, s
    fidget_freq: np.ndarray  # [B, F]
    fidget_sin: np.ndarray  # [B, F, H, D]
    fidget_cos: np.ndarray  # [B, F, H, D]


def jmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product rule for jets [3, ...]."""
    return np.stack([a[0] * b[0], a[1] * b[0] + a[0] * b[1], a[2] * b[0] + 2.0 * a[1] * b[1] + a[0] * b[2]])


def _sin_jet(rate: np.ndarray, phase: np.ndarray, t: np.ndarray) -> np.ndarray:
    """sin(2 pi rate t + phase) as a jet."""
    w = 2.0 * np.pi * rate
    x = w * t + phase
    s, c = np.sin(x), np.cos(x)
    return np.stack([s, w * c, -w * w * s])


def _minimum_jerk_step(t: np.ndarray, centre: np.ndarray, width: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step S 0 -> 1 (10u^3 - 15u^4 + 6u^5 with u = (t - start) / width) and its integral from -inf, as jets."""
    u_raw = (t - (centre - 0.5 * width)) / width
    u = np.clip(u_raw, 0.0, 1.0)
    step = np.stack([u**3 * (10 + u * (-15 + 6 * u)), 30 * u**2 * (1 - u) ** 2 / width, 60 * u * (1 - u) * (1 - 2 * u) / width**2])
    integral = width * (u**4 * (2.5 + u * (-3 + u)) + np.maximum(u_raw - 1.0, 0.0))
    return step, np.stack([integral, step[0], step[1]])


def segment_weights(p: Program, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fade weights and their time integrals, jets [3, B, K, T]; t is [B, T] (weights sum to 1)."""
    step, integral = _minimum_jerk_step(t[:, None, :], p.centre[..., None], p.width[..., None])
    ones = np.stack([np.ones_like(t), np.zeros_like(t), np.zeros_like(t)])[:, :, None]
    time = np.stack([t, np.ones_like(t), np.zeros_like(t)])[:, :, None]
    zero = np.zeros_like(ones)
    s = np.concatenate([ones, step, zero], axis=2)
    i = np.concatenate([time, integral, zero], axis=2)
    return s[:, :, :-1] - s[:, :, 1:], i[:, :, :-1] - i[:, :, 1:]


def _harmonic_sum(t, freq, theta0, fm_depth, fm_rate, fm_phase, gain, amp_sin, amp_cos) -> np.ndarray:
    """sum_k gain_k(t) sum_h (amp_sin sin(h theta_k) + amp_cos cos(h theta_k)) as a jet [3, B, T, D].

    theta_k = 2 pi f_k t + theta0_k + (depth f_k / rate) sin(2 pi rate t + phase): frequency f_k (1 + depth cos ...).
    """
    tt = t[:, None, :]
    fm = _sin_jet(fm_rate[..., None], fm_phase[..., None], tt) * (fm_depth * freq / np.maximum(fm_rate, 1e-6))[..., None]
    w = 2.0 * np.pi * freq[..., None]
    theta = np.stack([w * tt + theta0[..., None] + fm[0], w + fm[1], fm[2]])  # [3, B, K, T]
    h = np.arange(1, H + 1)[:, None]
    th = theta[:, :, :, None] * h  # [3, B, K, H, T]
    s, c = np.sin(th[0]), np.cos(th[0])
    sin_j = np.stack([s, th[1] * c, th[2] * c - th[1] ** 2 * s])
    cos_j = np.stack([c, -th[1] * s, -th[2] * s - th[1] ** 2 * c])
    g = gain[:, :, :, None]  # [3, B, K, 1, T]
    sin_j, cos_j = jmul(g, sin_j), jmul(g, cos_j)
    b, k = freq.shape
    basis = np.concatenate([sin_j, cos_j], axis=3).reshape(3, b, 2 * k * H, -1)  # [3, B, 2KH, T]
    coef = np.concatenate([amp_sin, amp_cos], axis=2).reshape(b, 2 * k * H, -1)  # [B, 2KH, D]
    return np.matmul(basis.transpose(0, 1, 3, 2), coef)  # batched BLAS: [3, B, T, D]


@dataclasses.dataclass(frozen=True)
class Trajectory:
    dofs: np.ndarray  # jets [3, B, T, D]
    root: np.ndarray  # jets [3, 3, B, T]: path position on the ground (x, y, z)
    heading: np.ndarray  # jets [3, B, T]
    weights: np.ndarray  # [B, K, T] cross-fade weights (values)


def evaluate(p: Program, t: np.ndarray) -> Trajectory:
    """Joint angles, root path and heading at times t [B, T] with exact first and second derivatives."""
    weights, integrals = segment_weights(p, t)
    envelope = _sin_jet(p.env_rate[..., None], p.env_phase[..., None], t[:, None, :]) * p.env_depth[..., None]
    envelope[0] += 1.0  # slow amplitude variation 1 + depth sin(...)
    gain = jmul(weights, envelope)
    dofs = _harmonic_sum(t, p.freq, p.theta0, p.fm_depth, p.fm_rate, p.fm_phase, gain, p.amp_sin, p.amp_cos)
    dofs = dofs + np.matmul(weights.transpose(0, 1, 3, 2), p.mean)  # [3, B, T, D]
    b, f = p.fidget_freq.shape
    zeros = np.zeros((b, f))
    unit = np.zeros((3, b, f, t.shape[1]))
    unit[0] = 1.0
    dofs = dofs + _harmonic_sum(t, p.fidget_freq, zeros, zeros, zeros + 1.0, zeros, unit, p.fidget_sin, p.fidget_cos)
    direction = np.stack([np.cos(p.heading) * p.speed, np.sin(p.heading) * p.speed, p.slope * p.speed + p.climb])
    root = np.einsum("jbkt,xbk->jxbt", integrals, direction)
    heading = np.einsum("jbkt,bk->jbt", weights, p.heading)
    return Trajectory(dofs, root, heading, weights[0])
