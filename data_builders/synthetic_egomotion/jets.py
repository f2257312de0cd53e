"""Second-order forward-mode differentiation ("jets") for analytic body trajectories.

A `Jet` carries a value and its first and second time derivatives. Building every pose
from jets gives exact velocities and accelerations (for the IMU) from the same code that
gives positions (for the camera), so the two can never drift apart.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, Union

import numpy as np

JetLike = Union["Jet", float, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Jet:
    """value, d/dt value and d²/dt² value, all of the same shape."""

    value: np.ndarray
    d1: np.ndarray
    d2: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    def __getitem__(self, index) -> Jet:
        return Jet(self.value[index], self.d1[index], self.d2[index])

    def __add__(self, other: JetLike) -> Jet:
        other = as_jet(other)
        return Jet(self.value + other.value, self.d1 + other.d1, self.d2 + other.d2)

    __radd__ = __add__

    def __neg__(self) -> Jet:
        return Jet(-self.value, -self.d1, -self.d2)

    def __sub__(self, other: JetLike) -> Jet:
        return self + (-as_jet(other))

    def __rsub__(self, other: JetLike) -> Jet:
        return as_jet(other) + (-self)

    def __mul__(self, other: JetLike) -> Jet:
        other = as_jet(other)
        return Jet(
                self.value * other.value,
                self.d1 * other.value + self.value * other.d1,
                self.d2 * other.value + 2.0 * self.d1 * other.d1 + self.value * other.d2,
        )

    __rmul__ = __mul__


def as_jet(x: JetLike) -> Jet:
    """Constants have zero derivatives."""
    if isinstance(x, Jet):
        return x
    x = np.asarray(x, dtype=np.float64)
    zeros = np.zeros_like(x)
    return Jet(x, zeros, zeros)


def time_variable(t: np.ndarray) -> Jet:
    """The independent variable t: dt/dt = 1, d²t/dt² = 0."""
    t = np.asarray(t, dtype=np.float64)
    return Jet(t, np.ones_like(t), np.zeros_like(t))


def sin(x: Jet) -> Jet:
    s, c = np.sin(x.value), np.cos(x.value)
    return Jet(s, c * x.d1, -s * x.d1**2 + c * x.d2)


def cos(x: Jet) -> Jet:
    s, c = np.sin(x.value), np.cos(x.value)
    return Jet(c, -s * x.d1, -c * x.d1**2 - s * x.d2)


def clip01(x: Jet) -> Jet:
    """Clamp to [0, 1]; outside the interval the result is constant (zero derivatives)."""
    inside = (x.value > 0.0) & (x.value < 1.0)
    return Jet(np.clip(x.value, 0.0, 1.0), np.where(inside, x.d1, 0.0), np.where(inside, x.d2, 0.0))


def minimum_jerk(u: Jet) -> Jet:
    """10u³ − 15u⁴ + 6u⁵ on a clamped u: 0 → 1 with zero velocity and acceleration at both ends."""
    u = clip01(u)
    u3 = u * u * u
    return u3 * (10.0 + u * (-15.0 + 6.0 * u))


def stack(items: Sequence[JetLike], axis: int = -1) -> Jet:
    """np.stack for jets; constants are broadcast to the jets' shape."""
    shape = next(i.shape for i in items if isinstance(i, Jet))
    jets = [i if isinstance(i, Jet) else as_jet(np.broadcast_to(np.asarray(i, np.float64), shape)) for i in items]
    return Jet(
            np.stack([j.value for j in jets], axis),
            np.stack([j.d1 for j in jets], axis),
            np.stack([j.d2 for j in jets], axis),
    )


def matmul(a: JetLike, b: JetLike) -> Jet:
    """Batched matrix product (…ij,…jk->…ik) or matrix-vector product (…ij,…j->…i)."""
    a, b = as_jet(a), as_jet(b)
    if b.value.ndim == a.value.ndim - 1:
        mm = lambda x, y: np.einsum("...ij,...j->...i", x, y)
    else:
        mm = lambda x, y: np.einsum("...ij,...jk->...ik", x, y)
    return Jet(
            mm(a.value, b.value),
            mm(a.d1, b.value) + mm(a.value, b.d1),
            mm(a.d2, b.value) + 2.0 * mm(a.d1, b.d1) + mm(a.value, b.d2),
    )


def _matrix(rows: Sequence[Sequence[JetLike]]) -> Jet:
    return stack([stack(row) for row in rows], axis=-2)


def rot_x(angle: Jet) -> Jet:
    c, s = cos(angle), sin(angle)
    one, zero = as_jet(np.ones(c.shape)), as_jet(np.zeros(c.shape))
    return _matrix([[one, zero, zero], [zero, c, -s], [zero, s, c]])


def rot_y(angle: Jet) -> Jet:
    c, s = cos(angle), sin(angle)
    one, zero = as_jet(np.ones(c.shape)), as_jet(np.zeros(c.shape))
    return _matrix([[c, zero, s], [zero, one, zero], [-s, zero, c]])


def rot_z(angle: Jet) -> Jet:
    c, s = cos(angle), sin(angle)
    one, zero = as_jet(np.ones(c.shape)), as_jet(np.zeros(c.shape))
    return _matrix([[c, -s, zero], [s, c, zero], [zero, zero, one]])
