"""Command line: train, evaluate or summarise any system from one config.

  python -m imujax.main --config=configs/evi_mae.py:demo --workdir=runs/demo [--config.batch_size=8] [--mode=train]

Modes: ``train`` (resumes automatically from the workdir), ``eval`` (evaluates the latest checkpoint in the workdir,
or ``--config.init_from``), ``probe`` (a labelled protocol on frozen embeddings, `imujax.probe`), ``summary``
(parameter table and ``params: N`` without allocating any weights). ``:own`` configs take their dataset-dependent
fields from the built dataset first (`imujax.own_data`).
Before anything is built: config values that cannot work are refused (`imujax.config_checks`), and a workdir in use
by another run is refused (`imujax.workdir_lock`). SIGTERM during start-up stops the run at the next safe point
with exit status 0; inside the loop it saves a checkpoint first (`imujax.train`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys

import ml_collections

from absl import app, flags
from ml_collections import config_flags

from imujax import config_checks, runtime, workdir_lock

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file, optionally ':variant'.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and data.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "probe", "summary"], "What to do.")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/evi_mae.py:demo")
    logging.getLogger("absl").setLevel(logging.WARNING)

    if _MODE.value != "summary":
        config_checks.check(config, _MODE.value)
    from imujax import sharding
    sharding.initialize_distributed()
    if _stopped_by_sigterm():
        return

    if _MODE.value == "summary":
        from imujax import summary
        print(summary.parameter_table(config))
        return
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required for --mode=train, eval and probe")
    import jax
    lock = workdir_lock.WorkdirLock(_WORKDIR.value) if jax.process_index() == 0 else contextlib.nullcontext()
    with lock:  # process 0 holds it for all processes of the run
        from imujax import own_data, train
        if _stopped_by_sigterm():
            return
        config = own_data.resolve(config, _WORKDIR.value, overridden=_overridden(sys.argv[1:]))
        if _MODE.value == "probe":
            from imujax import probe
            probe.run(config, _WORKDIR.value)
        elif _MODE.value == "train":
            train.train_and_evaluate(config, _WORKDIR.value)
        else:
            for key, value in train.evaluate_only(config, _WORKDIR.value).items():
                print(f"{key}: {value:.4f}")


class _SigtermBeforeTheLoop:
    """SIGTERM before the training loop takes over the signal: remembered (never raised in the middle of an import or
    a compile) and acted on at the next safe point; `train._StopRequest` inherits a pending request."""
    requested = False

    def __call__(self, signum, frame):
        self.requested = True


_SIGTERM = _SigtermBeforeTheLoop()


def _stopped_by_sigterm() -> bool:
    if _SIGTERM.requested:
        print("stopped by SIGTERM during start-up, before the first step; rerun the same command to resume",
              file=sys.stderr, flush=True)
    return _SIGTERM.requested


def _overridden(argv: list[str]) -> list[str]:
    """The dotted config keys given as --config.a.b=v."""
    return [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, plus what ml_collections lacks: it refuses an override of a key the config does not have
    (``--config.model.imu_dimension=3``), but with a bare AttributeError traceback; here that becomes a usage error
    naming the override and listing the keys that do exist there."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as e:
        config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
        if config_arg is None:
            raise
        config = flags.FLAGS["config"].parser.parse(config_arg)  # ml_collections' own loader of the config file
        for dotted in _overridden(argv):
            unknown = _unknown_key(config, dotted)
            if unknown:
                raise app.UsageError(unknown) from e
        raise


def _unknown_key(config: ml_collections.ConfigDict, dotted: str) -> str | None:
    node = config
    for depth, key in enumerate(dotted.split(".")):
        if not isinstance(node, ml_collections.ConfigDict) or key not in node:
            where = ".".join(dotted.split(".")[:depth]) or "config"
            known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            return (f"unknown config key {dotted!r} (from --config.{dotted}=...): {where!r} has no key {key!r}; "
                    f"known keys: {', '.join(known)}")
        node = node[key]
    return None


def run() -> None:
    signal.signal(signal.SIGTERM, _SIGTERM)
    try:
        app.run(main, flags_parser=parse_flags)
    except SystemExit:
        raise
    except (app.UsageError, config_checks.ConfigError, workdir_lock.WorkdirLockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - turn config/data errors into one readable line plus the traceback in logs
        logging.exception("imujax failed")
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    runtime.use_huge_pages()
    run()
