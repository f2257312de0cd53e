"""Defaults shared by every system's config: data loading, optimiser, mesh, checkpoints, logging, evaluation."""

import os

import ml_collections

# The folder holding the raw downloads of real datasets, one subfolder per dataset (e.g. $IMUJAX_DATA_DIR/hapt).
DATA_DIR_VARIABLE = "IMUJAX_DATA_DIR"


def raw_data_dir(dataset: str) -> str:
    """$IMUJAX_DATA_DIR/<dataset>, or '' when the variable is unset: a run that must build the dataset then stops with
    an error naming --config.data.manual_dirs.<dataset> (imujax.input_pipeline.ensure_built)."""
    root = os.environ.get(DATA_DIR_VARIABLE, "")
    return os.path.join(root, dataset) if root else ""


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.system = ""
    config.seed = 0
    # Start a new run from other weights (ignored once the workdir has a checkpoint of its own): a directory written
    # by `python -m imujax.convert`, or another run's workdir ("RUN_DIR": its best checkpoint if it kept one, else its
    # latest; "RUN_DIR:best"; "RUN_DIR:latest"; or one step directory). Arrays load by path and shape; the others
    # keep their initialisation. init_only: comma-separated path prefixes to load, e.g. "encoder" (TSFM Stage 2 from
    # a Stage-1 run).
    config.init_from = ""
    config.init_only = ""

    config.data = ml_collections.ConfigDict(dict(
        name="",                     # TFDS name, e.g. "synthetic_egomotion/default"
        data_dir="",                 # empty: <workdir>/data
        from_dataset=False,          # `:own` configs: channels, rate, window, classes, video and normalisation
                                     # statistics from the built dataset (imujax.own_data)
        auto_build=False,            # build the embedded dataset on first use (synthetic data only)
        train_split="train", eval_split="test",
        worker_count=2,              # grain worker processes (keep fixed across a run: the iterator state depends on it)
        read_threads=2,              # threads transforming batches in each reader (process 0 or each worker)
        prefetch_batches=2,          # batches read ahead per reader
        shuffle_seed=0, imu_channels=(), frame_stride=4,
        validation_fraction=0.2,     # checkpoint.select_on=validation: share of training subjects held out
        # Multi-dataset training (imujax.mixture): TFDS names drawn with p_i ∝ n_i^T; empty: config.data.name alone.
        # config.data.name stays the evaluation dataset and must be one of them. per_dataset.<dataset> overrides
        # config.data fields for one dataset (e.g. channel_names, patch_seconds); manual_dirs.<dataset> is the raw
        # data folder auto_build builds a non-embedded dataset from.
        mixture=(), mixture_temperature=0.5,
        per_dataset=ml_collections.ConfigDict(), manual_dirs=ml_collections.ConfigDict()))

    # JAX's default precision of f32 matmuls in training and --mode=eval (jax.default_matmul_precision): "default"
    # (exact f32 on CPU), or "bfloat16": one bf16 pass with f32 accumulation, what TPUs do by default; layers.Linear
    # and the recurrent encoders then take bf16 operands on CPU too (several times faster with AMX or AVX512-BF16).
    config.matmul_precision = "default"
    config.batch_size = 16           # global batch over all hosts and devices
    config.num_epochs = 1            # used when total_steps is 0
    config.total_steps = 0

    config.optimizer = ml_collections.ConfigDict(dict(
        name="adam",                 # adam: L2 decay added to the gradient (torch.optim.Adam); adamw: decoupled
        learning_rate=1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
        schedule="constant",         # constant | multistep | cosine
        milestones_epochs=(), gamma=0.1, warmup_steps=0, min_learning_rate=0.0, grad_clip_norm=0.0,
        lr_multipliers={}))          # {parameter-path regex: factor}, e.g. {"mlp_head": 100.0} for a new head

    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))

    config.checkpoint = ml_collections.ConfigDict(dict(
        every_steps=1000, keep=3, use_async=True,
        best_metric="",              # model selection: eval key kept best in <workdir>/best_checkpoint; "" = the
                                     # system's own (fine-tuning: config.finetune.metric), "none" = off
        best_mode="max",             # for an explicit best_metric: "max" or "min"
        select_on="validation"))     # where the best checkpoint is selected (imujax.validation): "validation" =
                                     # data.validation_fraction of the training subjects held out; "eval" = the eval
                                     # split (the test set in a train/test protocol), logged as such
    config.log_every_steps = 50
    # imujax.alarms: warn when a loss term stays within `tolerance` of its trivial value (ln(batch) for InfoNCE, 1.0
    # for a norm-pix MAE, chance accuracy) for `patience_steps` steps; 0 turns the alarms off
    config.alarms = ml_collections.ConfigDict(dict(patience_steps=200, tolerance=0.02))
    config.eval_every_steps = 0      # 0: every eval_every_epochs epochs, or only at the end when that is 0 too
    config.eval_every_epochs = 0     # used when eval_every_steps is 0 (fine-tuning: 1, as upstream validates per epoch)
    config.figures = True            # curves + the system's pictures (e.g. MAE reconstructions) at the end of a run
    config.eval = ml_collections.ConfigDict(dict(
        retrieval=True, linear_probe=True, probe_train_examples=2048, probe_l2=1e-2, batch_size=0,
        classification=True,         # logits metrics (accuracy, macro/weighted F1 per horizon) for fine-tuning systems
        checkpoint="auto",           # --mode=eval/probe: "auto" (best_checkpoint if kept, else latest) | "best"
                                     # | "latest"
        # --mode=probe (imujax.probe): logistic (+ MLP) probes on frozen embeddings, C chosen on the training groups
        protocol="split",            # split (train_split -> eval_split) | loso | kfold (over probe_split)
        probe_split="",              # loso / kfold: the split to fold (empty: data.train_split)
        group_field="subject",       # the record field that groups records (subjects; or a "fold" field)
        folds=5,                     # kfold: number of folds of whole groups
        probe_cv_folds=5,            # grouped CV folds (at most the training groups) choosing C / alpha
        pool_per_recording=False,    # one prediction per recording: mean of its windows' embeddings
        mlp_probe=False,             # also an MLP probe
        random_reference=False,      # also probe a randomly initialised encoder of the same config
        probe_feature="fused"))      # the system's embed() output to probe
    return config
