"""The training loop: resumable, deterministic on CPU, NaN-guarded.

One optimiser step follows the contract of :mod:`vaelens.models.base`::

    out = model.training_losses(x, step=step)
    main.zero_grad(); aux.zero_grad()
    out["loss"].backward()
    if "aux_loss" in out: aux grads cleared; out["aux_loss"].backward()
    main.step(); aux.step()

The main optimiser is Adam (``adam_betas``) with L2 weight decay (``weight_decay``) on
``model.main_parameters()``; the aux optimiser (FactorVAE's discriminator) is Adam with
``model.aux_optimizer_config()``. With ``schedule = "cosine"`` every group's learning rate
at step ``t`` of ``T`` is ``lr_0 * (1 + cos(pi * t / T)) / 2``.

A run directory holds ``config.json``, ``status.json``, ``metrics.jsonl`` and
``checkpoints/``. Calling :func:`train` again on a directory with a checkpoint resumes
from the newest one; on CPU the resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaelens.errors import CheckpointError, ConfigError, ModelContractError, TrainingDivergedError
from vaelens.io import atomic_write_json
from vaelens.train.checkpoint import (
    Checkpoint,
    clean_partial,
    load_checkpoint,
    prune_checkpoints,
    restore_model,
    restore_optimizer,
    restore_rng_state,
    save_checkpoint,
)
from vaelens.train.config import ADAM_BETAS, TrainConfig
from vaelens.train.data import EpochOrder, TrainingSet, build_training_set
from vaelens.train.logging import (
    MetricsLog,
    ProgressBar,
    ScalarLogger,
    TensorBoardLogger,
    WandbLogger,
    read_metrics,
    write_status,
)
from vaelens.train.run import (
    Run,
    TrustCode,
    build_model_from_config,
    check_model_trust,
    merge_trust,
)
from vaelens.train.stopping import PlateauRule

__all__ = [
    "RESUMABLE_CHANGES",
    "TRAINING_FIELDS",
    "RunResult",
    "StepRunner",
    "build_model_from_config",
    "config_differences",
    "cosine_factor",
    "default_channels_last",
    "finished_status",
    "is_finished",
    "load_run",
    "resolve_device",
    "train",
]

#: config fields that may change between a run and its resumption
RESUMABLE_CHANGES = frozenset(
    {
        "steps",
        "epochs",
        "out",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "tensorboard",
        "wandb",
        "device",
        "num_threads",
        "compile",
        "dataset_root",
    }
)


@dataclass
class RunResult:
    """What :func:`train` returns.

    ``metrics`` is the last metrics.jsonl record; ``resumed_from`` the checkpoint step the
    run started from (``None`` for a fresh run); ``images_per_s`` the throughput of the
    steps run by this call; ``run`` the :class:`Run`, whose ``model()`` / ``dataset()``
    caches hold the trained model and the dataset it was trained on.
    """

    run_dir: Path
    status: str
    step: int
    total_steps: int
    epoch: int
    checkpoint: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    resumed_from: int | None = None
    elapsed_s: float = 0.0
    images_per_s: float = 0.0
    stopped_by: str | None = None
    run: Run | None = field(default=None, repr=False, compare=False)


def cosine_factor(step: int, total: int) -> float:
    """``(1 + cos(pi * step / total)) / 2``: 1 at step 0, 0 at ``total``."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def lr_factor(step: int, config: TrainConfig, total: int | None = None) -> float:
    """The learning rate of step ``step`` over ``config.lr``: a linear warm-up
    ``min(1, (step + 1) / warmup_steps)`` times the schedule (1, or
    :func:`cosine_factor` over the run's ``total`` steps, default ``config.steps``)."""
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.schedule != "cosine":
        return warm
    length = total if total is not None else config.total_steps(0)
    return warm * cosine_factor(step, length)


def default_channels_last(device: torch.device | str) -> bool:
    """What ``channels_last = "auto"`` picks: channels-last (NHWC) on every device.

    On CPU the oneDNN convolutions of the roy2025 network run ~1.3x faster in NHWC
    (benchmarks/train_throughput.py: plain VAE at batch 256 went from ~49% to ~63% of the
    measured matmul peak); on CUDA NHWC is what cuDNN's tensor-core kernels want.
    """
    return torch.device(device).type in ("cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU -> ConfigError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device(device)


#: the fields that change how a model trains (all but RESUMABLE_CHANGES, plus its length)
TRAINING_FIELDS = frozenset(TrainConfig.model_fields) - (RESUMABLE_CHANGES - {"steps", "epochs"})


def config_differences(
    saved: dict[str, Any], config: TrainConfig, *, fields: frozenset[str] | None = None
) -> dict[str, tuple[Any, Any]]:
    """``{field: (saved value, config's value)}`` over ``fields`` (default: all but
    :data:`RESUMABLE_CHANGES`) where the saved config (a ``config.json`` or checkpoint
    dict) differs from ``config``; a field the saved dict lacks (added after it was
    written) reads as its default."""
    keep = fields if fields is not None else frozenset(TrainConfig.model_fields) - RESUMABLE_CHANGES
    defaults = {
        k: f.default
        for k, f in TrainConfig.model_fields.items()
        if not f.is_required() and f.default_factory is None
    }
    old = {**json.loads(json.dumps(defaults, default=str)), **saved}
    new = config.to_json_dict()
    return {k: (old.get(k), new.get(k)) for k in sorted(keep) if old.get(k) != new.get(k)}


def _check_resume_config(run_dir: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    diff = config_differences(saved, config)
    if diff:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(
            f"run directory {run_dir} holds a checkpoint of a different configuration ({detail}); "
            "use another --out or restore the original settings"
        )


def _adam(params: list[nn.Parameter], kwargs: dict[str, Any]) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel per parameter: ~10x faster than the per-tensor
    loop on CPU for these models), falling back to foreach kernels where fused is unsupported."""
    kw = dict(kwargs)
    if "fused" not in kw and "foreach" not in kw:
        devices = {p.device.type for p in params}
        fusable = devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)
        kw["fused" if fusable else "foreach"] = True
    opt = torch.optim.Adam(params, **kw)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    return opt


def _scalar_terms(out: Any, step: int) -> tuple[list[str], torch.Tensor]:
    if not isinstance(out, dict) or "loss" not in out:
        raise ModelContractError(
            f"training_losses at step {step}: expected a dict with a 'loss' entry, got {type(out).__name__}"
        )
    names = list(out)
    try:
        values = torch.stack([out[k].detach().float().reshape(()) for k in names])
    except (AttributeError, RuntimeError) as exc:
        raise ModelContractError(
            f"training_losses at step {step}: every entry must be a scalar tensor ({exc})"
        ) from None
    return names, values


class StepRunner:
    """One optimiser step of the training contract, shared by :func:`train` and the benchmark.

    Owns the main Adam (L2 ``weight_decay``, ``betas``, fused kernel), the aux Adam when the model
    has an aux module, the fp16 ``GradScaler`` and the autocast settings. ``runner(x, step)``
    computes the losses, checks them (NaN/Inf -> :class:`TrainingDivergedError` before any
    weight changes), backpropagates and steps; it returns the term names and float values.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = ADAM_BETAS,
        device: torch.device | str = "cpu",
        amp: str = "off",
        compile: bool = False,
    ) -> None:
        self.model = model
        self.device = torch.device(device)
        main_params = (
            model.main_parameters()  # type: ignore[operator]
            if callable(getattr(model, "main_parameters", None))
            else list(model.parameters())
        )
        self.main = _adam(
            main_params, {"lr": lr, "weight_decay": weight_decay, "betas": tuple(betas)}
        )
        aux = model.aux_module() if callable(getattr(model, "aux_module", None)) else None  # type: ignore[operator]
        aux_params = [p for p in aux.parameters() if p.requires_grad] if aux is not None else []
        self.aux_module = aux if aux_params else None
        self.aux = None
        if aux_params:
            cfg = (
                dict(model.aux_optimizer_config())  # type: ignore[operator]
                if callable(getattr(model, "aux_optimizer_config", None))
                else {}
            )
            self.aux = _adam(aux_params, cfg)
        self.optimizers: dict[str, torch.optim.Optimizer] = {"main": self.main}
        if self.aux is not None:
            self.optimizers["aux"] = self.aux
        if amp == "fp16" and self.device.type != "cuda":
            raise ConfigError("amp: 'fp16' needs device 'cuda'; use 'bf16' or 'off' on the CPU")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")
        self.loss_fn = model.training_losses
        if compile:
            self.loss_fn = torch.compile(model.training_losses)

    def set_lr_factor(self, factor: float) -> None:
        """Set every group's learning rate to ``initial_lr * factor``."""
        for opt in self.optimizers.values():
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * factor

    def __call__(self, x: torch.Tensor, step: int) -> tuple[list[str], list[float]]:
        with torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        ):
            out = self.loss_fn(x, step=step)
        names, values = _scalar_terms(out, step)
        vals = values.tolist()
        bad = [(k, v) for k, v in zip(names, vals, strict=True) if not math.isfinite(v)]
        if bad:
            # name the components first: "loss" is non-finite whenever one of them is
            bad.sort(key=lambda kv: kv[0] in ("loss", "aux_loss"))
            terms = ", ".join(f"{k!r} = {v}" for k, v in bad)
            raise TrainingDivergedError(f"training diverged at step {step}: loss term {terms}")
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(out["loss"]).backward()
        if "aux_loss" in out:
            if self.aux_module is None:
                raise ModelContractError(
                    "training_losses returned 'aux_loss' but the model's aux_module() is None"
                )
            for p in self.aux_module.parameters():
                p.grad = None
            self.scaler.scale(out["aux_loss"]).backward()
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        return names, vals


def _model_info(name: str, model: nn.Module, image_shape: tuple[int, ...]) -> dict[str, Any]:
    try:
        hparams = model.hparams()  # type: ignore[operator]
        json.dumps(hparams)
    except (AttributeError, NotImplementedError, TypeError):
        hparams = None
    return {
        "name": name,
        "variant": getattr(model, "variant", None),
        "hparams": hparams,
        "image_shape": list(image_shape),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (user code may use the global RNG)
    random.seed(seed)


class _Window:
    """Running sums of the loss terms between two metrics records."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.t0 = time.perf_counter()
        self.images = 0

    def add(self, names: list[str], values: list[float], n_images: int) -> None:
        for k, v in zip(names, values, strict=True):
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        self.images += n_images

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def state(self) -> dict[str, Any]:
        return {"sums": self.sums, "count": self.count}

    def load(self, state: dict[str, Any] | None) -> None:
        if state:
            self.sums = {k: float(v) for k, v in state.get("sums", {}).items()}
            self.count = int(state.get("count", 0))


@dataclass
class _Progress:
    """Where one call of :func:`train` stands (read by the failure handler too)."""

    step: int = 0
    total: int | None = None
    last_ckpt: Path | None = None
    ckpt_step: int | None = None  #: the step of ``last_ckpt``


@dataclass
class _Session:
    """What one call of :func:`train` set up: data, model, optimisers, data order, loggers."""

    run: Run
    cfg_json: dict[str, Any]
    device: torch.device
    channels_last: bool
    trainset: TrainingSet
    model: nn.Module
    runner: StepRunner
    order: EpochOrder
    window: _Window
    info: dict[str, Any]
    loggers: list[ScalarLogger]
    plateau: PlateauRule

    @property
    def config(self) -> TrainConfig:
        return self.run.config


def _as_run(config: Run | TrainConfig | dict[str, Any], trust_code: TrustCode) -> Run:
    """The :class:`Run` to train: ``config`` itself (trusting ``trust_code`` too), or a new
    one in ``config.out``."""
    if not isinstance(config, Run):
        return Run.create(config, trust_code=trust_code)
    config.trust_code = merge_trust(config.trust_code, trust_code)
    if Path(config.config.out) != config.path:  # a run directory that was moved
        config.config = config.config.model_copy(update={"out": config.path})
    return config


def _config_source(run: Run) -> str:
    return f"config of run {run.path}"


def _check_before_creating(run: Run, model: nn.Module | None, dataset: Any | None) -> None:
    """What can be refused before the run directory exists: nothing is created for a run
    whose dataset or model name is unknown, or whose model is untrusted code."""
    if dataset is None:
        from vaelens.data.registry import get_spec
        from vaelens.errors import DatasetError

        try:
            get_spec(run.config.dataset)
        except DatasetError:
            run.dataset()  # not a registry name: load it now (a bad name fails here)
    if model is None:
        name = run.config.model
        check_model_trust(name, run.trust_code, source=_config_source(run), what="this config")
        if ":" not in name:
            from vaelens.models import get_model_class

            get_model_class(name)
    if run.path.exists() and not run.path.is_dir():
        raise ConfigError(f"out: {run.path} is a file; expected a run directory")


def _begin(run: Run) -> Checkpoint | None:
    """Create the run directory, drop half-written checkpoints, load the one to resume from."""
    run.path.mkdir(parents=True, exist_ok=True)
    clean_partial(run.path / "checkpoints")
    latest = run.latest_checkpoint
    if latest is None:
        return None
    ckpt = load_checkpoint(latest)
    _check_resume_config(run.path, ckpt.meta.get("config", {}), run.config)
    return ckpt


def _training_data(run: Run, dataset: Any | None, device: torch.device) -> TrainingSet:
    """The training set of the run's dataset (``dataset`` when given), on the GPU if it fits."""
    config = run.config
    if dataset is not None:
        run.cache(dataset=dataset)
    trainset = build_training_set(run.dataset(), config.n_train, seed=config.seed)
    if device.type == "cuda" and trainset.images is not None:
        free, _ = torch.cuda.mem_get_info(device)
        if trainset.nbytes < free // 4:
            trainset.to(device)
    return trainset


def _training_model(
    run: Run,
    model: nn.Module | None,
    trainset: TrainingSet,
    device: torch.device,
    channels_last: bool,
) -> nn.Module:
    """``model`` (or the config's, built for the data) on ``device``, in training mode."""
    config = run.config
    image_shape = trainset.image_shape
    if model is None:
        model = build_model_from_config(
            config.model,
            config.model_params,
            image_shape,
            len(trainset),
            trust_code=run.trust_code,
            source=_config_source(run),
            what="this config",
        )
    model_shape = tuple(getattr(model, "image_shape", image_shape))
    if model_shape != tuple(image_shape):
        raise ConfigError(
            f"model {config.model}: expects images {model_shape}, dataset {config.dataset} has {tuple(image_shape)}"
        )
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-arg]
    model.train()
    return model


def _restore(ckpt: Checkpoint, s: _Session) -> None:
    """Weights, optimisers, data order, grad scaler, log window and RNGs from ``ckpt``."""
    restore_model(ckpt, s.model)
    for name, opt in s.runner.optimizers.items():
        restore_optimizer(ckpt, name, opt)
    if "data_order" not in ckpt.meta:
        raise CheckpointError(f"checkpoint {ckpt.path}: the sidecar lacks the field 'data_order'")
    s.order.load_state_dict(ckpt.meta["data_order"])
    if ckpt.meta.get("grad_scaler"):
        s.runner.scaler.load_state_dict(ckpt.meta["grad_scaler"])
    s.window.load(ckpt.meta.get("log_window"))
    s.plateau.load(ckpt.meta.get("plateau"))
    restore_rng_state(ckpt)


def _setup(
    run: Run,
    ckpt: Checkpoint | None,
    model: nn.Module | None,
    dataset: Any | None,
    prog: _Progress,
    loggers: list[ScalarLogger],
) -> _Session:
    """Seed, load the data, build the model and optimisers, restore ``ckpt`` when resuming."""
    config = run.config
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    channels_last = (
        default_channels_last(device)
        if config.channels_last == "auto"
        else bool(config.channels_last)
    )
    _seed_everything(config.seed)
    trainset = _training_data(run, dataset, device)
    model = _training_model(run, model, trainset, device, channels_last)
    runner = StepRunner(
        model,
        lr=config.lr,
        weight_decay=config.weight_decay,
        betas=config.adam_betas,
        device=device,
        amp=config.amp,
        compile=config.compile,
    )
    order = EpochOrder(len(trainset), config.batch_size, config.seed)
    prog.total = config.total_steps(len(trainset))
    info = _model_info(config.model, model, trainset.image_shape)
    cfg_json = config.to_json_dict()
    s = _Session(
        run,
        cfg_json,
        device,
        channels_last,
        trainset,
        model,
        runner,
        order,
        _Window(),
        info,
        loggers,
        PlateauRule(
            config.plateau_patience,
            config.plateau_rtol,
            config.plateau_term,
            start=getattr(model, "kl_warmup", 0),
        ),
    )
    if ckpt is not None:
        _restore(ckpt, s)
    return s


def _open_loggers(s: _Session, resumed: bool) -> None:
    if s.config.tensorboard:
        s.loggers.append(TensorBoardLogger(s.run.path))
    if s.config.wandb:
        s.loggers.append(WandbLogger(s.run.path, s.cfg_json, resume=resumed))


def _save(s: _Session, at: int, total: int) -> Path:
    """Write the checkpoint of step ``at`` and prune the old ones; returns its JSON path."""
    ckpt_dir = s.run.path / "checkpoints"
    scaler = s.runner.scaler
    path = save_checkpoint(
        ckpt_dir,
        at,
        model=s.model,
        optimizers=s.runner.optimizers,
        meta={
            "config": s.cfg_json,
            "epoch": at // s.order.steps_per_epoch,
            "scheduler": {"kind": s.config.schedule, "total_steps": total, "step": at},
            "data_order": s.order.state_dict(),
            "grad_scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "log_window": s.window.state(),
            "plateau": s.plateau.state(),
            "model": s.info,
        },
    )
    prune_checkpoints(ckpt_dir, s.config.keep_checkpoints)
    return path


def _one_step(s: _Session, prog: _Progress) -> tuple[list[str], int]:
    """One optimiser step at ``prog.step``; returns the loss-term names and the batch size."""
    step, total = prog.step, int(prog.total or 0)
    s.runner.set_lr_factor(lr_factor(step, s.config, total))
    x = s.trainset.batch(s.order.indices(step), device=s.device, channels_last=s.channels_last)
    try:
        names, vals = s.runner(x, step)
    except TrainingDivergedError as exc:
        raise TrainingDivergedError(
            f"{exc} (run {s.run.path}; last good checkpoint: {prog.last_ckpt or 'none'})"
        ) from None
    prog.step = step + 1
    s.window.add(names, vals, x.shape[0])
    return names, x.shape[0]


def _log_window(
    s: _Session,
    step: int,
    t_start: float,
    metrics_log: MetricsLog,
    bar: ProgressBar,
    names: list[str],
) -> dict[str, Any]:
    """Write the window's means as one metrics record, start a new window; returns the record."""
    elapsed = time.perf_counter() - s.window.t0
    record = {
        "step": step,
        "epoch": step / s.order.steps_per_epoch,
        "lr": s.runner.main.param_groups[0]["lr"],
        **s.window.means(),
        "images_per_s": s.window.images / elapsed if elapsed > 0 else None,
        "time_s": time.perf_counter() - t_start,
    }
    metrics_log.write(record)
    s.plateau.update(step, s.window.means())
    for lg in s.loggers:
        lg.log(step, {k: v for k, v in record.items() if k != "step"})
    s.window = _Window()
    bar.update(step, {k: v for k, v in record.items() if k in names})
    return record


def _loop(
    s: _Session,
    prog: _Progress,
    metrics_log: MetricsLog,
    bar: ProgressBar,
    progress: bool,
    time_budget: float | None = None,
) -> tuple[dict[str, Any], int, float]:
    """Step until ``prog.total`` (or until ``time_budget`` seconds have passed, after at least
    one step); returns (last metrics record, images seen, seconds)."""
    config, total = s.config, int(prog.total or 0)
    t_start = time.perf_counter()
    deadline = t_start + time_budget if time_budget is not None else float("inf")
    last_record: dict[str, Any] = {}
    ran_images = 0
    last_bar = 0.0
    while (
        prog.step < total
        and not s.plateau.fired
        and not (ran_images and time.perf_counter() >= deadline)
    ):
        names, n_images = _one_step(s, prog)
        ran_images += n_images
        step = prog.step
        if step % config.log_every == 0 or step == total:
            last_record = _log_window(s, step, t_start, metrics_log, bar, names)
        elif progress and time.perf_counter() - last_bar > 0.25:
            last_bar = time.perf_counter()
            bar.update(step)
        if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == total:
            prog.last_ckpt, prog.ckpt_step = _save(s, step, total), step
    return last_record, ran_images, time.perf_counter() - t_start


def _keep_trained(s: _Session) -> None:
    """Put the trained model in the run's cache as :meth:`Run.open` would build it: CPU,
    contiguous weights, eval mode."""
    model = s.model.to("cpu")
    if s.channels_last:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-arg]
    model.eval()
    s.run.cache(model=model)


def _finish(
    s: _Session, prog: _Progress, resumed_from: int | None, loop: tuple[dict[str, Any], int, float]
) -> RunResult:
    """Final checkpoint and status "completed" (or "stopped" when the time budget ended the
    call first: the run resumes from that checkpoint); the :class:`RunResult`."""
    last_record, ran_images, elapsed = loop
    total = int(prog.total or 0)
    status = "completed" if prog.step >= total or s.plateau.fired else "stopped"
    if prog.last_ckpt is None or prog.ckpt_step != prog.step:
        prog.last_ckpt, prog.ckpt_step = _save(s, prog.step, total), prog.step
    run_dir = s.run.path
    extra = {"stopped_by": "plateau"} if s.plateau.fired else {}
    write_status(
        run_dir, status, step=prog.step, total_steps=total, checkpoint=str(prog.last_ckpt), **extra
    )
    if not last_record:
        recs = read_metrics(run_dir)
        last_record = recs[-1] if recs else {}
    _keep_trained(s)
    return RunResult(
        run_dir=run_dir,
        status=status,
        step=prog.step,
        total_steps=total,
        epoch=prog.step // s.order.steps_per_epoch,
        checkpoint=prog.last_ckpt,
        metrics=last_record,
        resumed_from=resumed_from,
        elapsed_s=elapsed,
        images_per_s=ran_images / elapsed if elapsed > 0 and ran_images else 0.0,
        stopped_by="plateau" if s.plateau.fired else None,
        run=s.run,
    )


def trained_length(ckpt: Checkpoint) -> int:
    """The number of steps the run of ``ckpt`` was set to train (its scheduler's
    ``total_steps``). Raises :class:`CheckpointError` naming the sidecar when it is not a
    non-negative int."""
    sched = ckpt.meta.get("scheduler")
    total = sched.get("total_steps") if isinstance(sched, dict) else None
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: field 'scheduler.total_steps' is {repr(total)[:40]}, "
            "expected a non-negative int"
        )
    return total


def plateau_fired(ckpt: Checkpoint) -> bool:
    """Whether the plateau stop rule had ended the run of ``ckpt``."""
    plateau = ckpt.meta.get("plateau")
    return isinstance(plateau, dict) and plateau.get("fired_at") is not None


def finished_status(ckpt: Checkpoint) -> dict[str, Any]:
    """The ``status.json`` fields of a run that ``ckpt`` finished: ``step``, ``total_steps``
    (its length, or the step the plateau rule stopped it at) and, when the plateau rule
    ended it, ``stopped_by``."""
    if plateau_fired(ckpt):
        return {"step": ckpt.step, "total_steps": ckpt.step, "stopped_by": "plateau"}
    return {"step": ckpt.step, "total_steps": max(trained_length(ckpt), ckpt.step)}


def is_finished(ckpt: Checkpoint, config: TrainConfig) -> bool:
    """Whether ``ckpt`` ends the training ``config`` asks for: the plateau rule fired in it,
    or it is at (or past) ``config.steps``; for a length in epochs (or the default
    length), at (or past) the length it was trained to when ``steps`` and ``epochs`` are
    the ones it was trained with."""
    if plateau_fired(ckpt):
        return True
    if config.steps is not None:
        return ckpt.step >= config.steps
    saved = ckpt.meta.get("config")
    saved = saved if isinstance(saved, dict) else {}
    same = saved.get("steps") is None and saved.get("epochs") == config.epochs
    return same and ckpt.step >= trained_length(ckpt)


def _already_trained(
    run: Run, ckpt: Checkpoint, model: nn.Module | None, dataset: Any | None
) -> RunResult:
    """The result of a run whose newest checkpoint finishes its training
    (:func:`is_finished`): nothing is built or trained, ``config.json`` is left as it is,
    and the model loads from that checkpoint when asked for (``model``, when given, gets
    its weights now, on the CPU in eval mode)."""
    if dataset is not None:
        run.cache(dataset=dataset)
    if model is not None:
        restore_model(ckpt, model)
        run.cache(model=model.to("cpu").eval())
    epoch = ckpt.meta.get("epoch", 0)
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise CheckpointError(f"checkpoint {ckpt.path}: field 'epoch': expected an int")
    status = finished_status(ckpt)
    write_status(run.path, "completed", checkpoint=str(ckpt.path), **status)
    recs = read_metrics(run.path)
    return RunResult(
        run_dir=run.path,
        status="completed",
        step=ckpt.step,
        total_steps=status["total_steps"],
        epoch=epoch,
        checkpoint=ckpt.path,
        metrics=recs[-1] if recs else {},
        resumed_from=ckpt.step,
        stopped_by=status.get("stopped_by"),
        run=run,
    )


def train(
    config: Run | TrainConfig | dict[str, Any],
    *,
    progress: bool = True,
    model: nn.Module | None = None,
    dataset: Any | None = None,
    trust_code: TrustCode = None,
    time_budget: float | None = None,
) -> RunResult:
    """Train ``config.model`` on ``config.dataset`` into the run directory ``config.out``.

    ``time_budget``: wall-clock seconds of training for this call (at least one step runs):
    when it runs out, a checkpoint is written and the result's status is "stopped"; the same
    call again resumes there (bit-identical to an uninterrupted run on CPU, as after a kill).

    ``config`` may be a :class:`Run` (trained in ``run.path``; a dataset already in its
    cache is reused). ``model`` / ``dataset`` replace the ones the config names (e.g. a user
    model that is not in the registry; the config's ``model`` should then be its import
    path so that :meth:`Run.open` can rebuild it). A ``"package.module:Class"`` model name
    is built only when trusted: ``trust_code`` lists the names whose code may be imported
    and run (``True``: any, for configs you wrote; a :class:`Run` adds its own
    ``trust_code``); an untrusted one raises a one-line :class:`ConfigError` before
    anything is imported or written. ``result.run`` is the :class:`Run`; its
    ``model()`` is the trained model (CPU, eval mode) and its ``dataset()`` the dataset
    trained on. A run directory with a checkpoint is resumed from its newest checkpoint;
    one whose newest checkpoint finishes the requested training (:func:`is_finished`)
    returns at once, building nothing and leaving its ``config.json`` as it is (an
    exported, weights-only run too; asked to train one further, it raises
    :class:`CheckpointError` before writing anything). Raises
    :class:`TrainingDivergedError` (status "failed") when a loss term is NaN or infinite,
    before that step updates any weight.
    """
    if time_budget is not None and not (isinstance(time_budget, int | float) and time_budget > 0):
        raise ConfigError(
            f"time_budget: expected a positive number of seconds, got {time_budget!r}"
        )
    run = _as_run(config, trust_code)
    _check_before_creating(run, model, dataset)
    ckpt = _begin(run)
    if ckpt is not None and is_finished(ckpt, run.config):
        return _already_trained(run, ckpt, model, dataset)
    if ckpt is not None and not ckpt.meta.get("optimizers"):
        raise CheckpointError(
            f"checkpoint {ckpt.path}: holds weights only (an exported run, no optimiser state), "
            f"so its training cannot go on past step {ckpt.step}; train into a new --out"
        )
    atomic_write_json(run.path / "config.json", run.config.to_json_dict())
    prog = _Progress(
        step=ckpt.step if ckpt else 0,
        last_ckpt=ckpt.path if ckpt else None,
        ckpt_step=ckpt.step if ckpt else None,
    )
    write_status(run.path, "running", step=prog.step)
    loggers: list[ScalarLogger] = []
    bar: ProgressBar | None = None
    metrics_log = MetricsLog(run.path / "metrics.jsonl")
    try:
        s = _setup(run, ckpt, model, dataset, prog, loggers)
        metrics_log.truncate_after(prog.step)
        _open_loggers(s, resumed=ckpt is not None)
        description = f"{run.config.model} {run.config.dataset}"
        bar = ProgressBar(prog.total, prog.step, enabled=progress, description=description)
        loop = _loop(s, prog, metrics_log, bar, progress, time_budget)
        return _finish(s, prog, ckpt.step if ckpt else None, loop)
    except BaseException as exc:
        write_status(
            run.path,
            "failed",
            step=prog.step,
            total_steps=prog.total,
            error=f"{type(exc).__name__}: {exc}",
            error_type=type(exc).__name__,
            checkpoint=str(prog.last_ckpt) if prog.last_ckpt else None,
        )
        raise
    finally:
        metrics_log.close()
        if bar is not None:
            bar.close()
        for lg in loggers:
            lg.close()


def load_run(
    run_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    trust_code: TrustCode = None,
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild a trained model from a run directory: ``(model in eval mode, its TrainConfig)``.

    Uses the newest checkpoint unless ``checkpoint`` (a ``.json`` or ``.safetensors`` path)
    is given. Raises :class:`CheckpointError` naming the file when there is none or it does
    not match. A ``"module:attr"`` model named by the run's files is imported only when
    ``trust_code`` holds it (see :meth:`Run.load_model`). Prefer :meth:`Run.open`
    (``run.model()``, ``run.config``), which caches.
    """
    run = Run.open(run_dir, trust_code=trust_code)
    return run.load_model(checkpoint, device=device), run.config
