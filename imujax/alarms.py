"""Learning alarms: say so when a loss term sits at the value a model that learned nothing would get.

A system lists its trivial values with ``trivial_values(batch_size) -> {metric: (value, why)}`` (e.g. an InfoNCE
term at ln(batch), a norm-pix MAE at 1.0, an in-batch accuracy at chance 1/batch). The loop feeds every logged step's
scalars to `LearningAlarms.update`; a term that has stayed within ``tolerance`` (relative, default 2%) of its trivial
value for ``patience_steps`` steps raises one warning on the console and an ``alarm/<metric>`` entry (the number of
steps it has been there) in metrics.jsonl; it re-arms once the term leaves the band.
"""

from __future__ import annotations

import logging
import math


def info_nce(batch_size: int) -> tuple[float, str]:
    return math.log(batch_size), f"ln(batch {batch_size})"


def chance(classes: int, what: str = "batch") -> tuple[float, str]:
    return 1.0 / classes, f"chance 1/{what} {classes}"


NORM_PIX_MAE = (1.0, "norm-pix MAE of a zero prediction")


class LearningAlarms:
    def __init__(self, trivial: dict[str, tuple[float, str]], patience_steps: int, tolerance: float = 0.02):
        self.trivial, self.patience, self.tolerance = dict(trivial), int(patience_steps), float(tolerance)
        self._since: dict[str, int] = {}  # term -> first logged step of its current stay in the band
        self._raised: set[str] = set()

    def update(self, step: int, scalars: dict[str, float]) -> dict[str, float]:
        """Scalars of one logged step -> {'alarm/<term>': steps in the band} for alarms raised now."""
        raised = {}
        if self.patience <= 0:
            return raised
        for term, (value, why) in self.trivial.items():
            current = scalars.get(term)
            if current is None:
                continue
            if abs(current - value) > self.tolerance * abs(value):
                self._since.pop(term, None)
                self._raised.discard(term)
                continue
            since = self._since.setdefault(term, step)
            if step - since >= self.patience and term not in self._raised:
                self._raised.add(term)
                raised[f"alarm/{term}"] = float(step - since)
                logging.warning("learning alarm: %s has stayed within %g%% of its trivial value %.4g (%s) for %d "
                                "steps (now %.4g): this term is not learning", term, 100 * self.tolerance, value,
                                why, step - since, current)
                print(f"WARNING learning alarm: {term}={current:.4g} has stayed within {100 * self.tolerance:g}% of "
                      f"its trivial value {value:.4g} ({why}) for {step - since} steps", flush=True)
        return raised


def for_system(system, config) -> LearningAlarms:
    hook = system.trivial_values
    trivial = hook(config.batch_size) if hook is not None else {}
    a = config.get("alarms") or {}
    return LearningAlarms(trivial, a.get("patience_steps", 200), a.get("tolerance", 0.02))
