"""The ``vaelens`` command line (typer).

Every command turns a :class:`vaelens.errors.VaelensError` into one line on stderr and
exit code 2, so that bad input never ends in a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vaelens.errors import VaelensError

if TYPE_CHECKING:
    from vaelens.train import TrainConfig

app = typer.Typer(
    name="vaelens",
    help="Mechanistic interpretability of VAEs through causal interventions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Ground-truth datasets: list, inspect, render, download, verify.", no_args_is_help=True
)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Directory of the dataset files (default: $VAELENS_DATA_DIR or ~/.cache/vaelens).",
    ),
]
SourceOpt = Annotated[
    str,
    typer.Option(
        "--source",
        help="'auto' (official files if present, else the renderer), 'procedural', 'file' or 'cache'.",
    ),
]


# ----------------------------------------------------------------------------------------- data


@data_app.command("list")
def data_list() -> None:
    """Show every registered dataset with its factors and sources."""
    from vaelens.data import list_datasets

    table = Table(title="vaelens datasets")
    for col in ("name", "factors (name=levels)", "image", "images", "sources"):
        table.add_column(col, overflow="fold")
    for spec in list_datasets():
        factors = " ".join(
            f"{n}={s}" for n, s in zip(spec.factor_names, spec.factor_sizes, strict=True)
        )
        if not spec.factorial:
            factors = f"{len(spec.factor_names)} observed attributes (binary)"
        c, h, w = spec.image_shape
        table.add_row(
            spec.name,
            factors,
            f"{c}x{h}x{w}",
            f"{spec.n_images:,}" if spec.factorial else "-",
            ", ".join(spec.sources),
        )
    console.print(table)


@data_app.command("info")
def data_info(
    name: Annotated[str, typer.Argument(help="Dataset name (see `vaelens data list`).")],
    root: RootOpt = None,
) -> None:
    """Describe a dataset: factors, files, checksums, supported interventions, cache state."""
    from vaelens.data import get_spec
    from vaelens.data.download import dataset_dir, find_file

    spec = get_spec(name)
    console.print(f"[bold]{spec.name}[/bold]: {spec.description}")
    console.print(f"image shape (C, H, W): {spec.image_shape}; sources: {', '.join(spec.sources)}")
    console.print(f"input interventions: {spec.interventions}")
    table = Table(title="factors")
    table.add_column("factor")
    table.add_column("levels")
    for n, s in zip(spec.factor_names, spec.factor_sizes, strict=True):
        table.add_row(n, str(s))
    console.print(table)
    if spec.files:
        console.print(f"files (looked for in {dataset_dir(name, root)}):")
        for f in spec.files:
            state = "present" if find_file(name, f.name, root) else "missing"
            console.print(f"  {f.name}  md5={f.md5 or '?'}  [{state}]")


@data_app.command("render")
def data_render(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="PNG path (default: NAME.png).")
    ] = None,
    n: Annotated[int, typer.Option("--n", min=1, max=1024, help="Number of samples.")] = 64,
    nrow: Annotated[int, typer.Option("--nrow", min=1, help="Images per row.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    source: SourceOpt = "auto",
    root: RootOpt = None,
) -> None:
    """Write a PNG grid of random samples of a dataset.

    In a terminal a bar shows its progress and an ETA; elsewhere one line a stage.
    """
    from vaelens.data.render import write_sample_grids

    with StageProgress("render") as progress:
        (grid,) = write_sample_grids(
            [(name, out or Path(f"{name}.png"))],
            n=n,
            nrow=nrow,
            seed=seed,
            source=source,
            root=root,
            progress=progress,
        )
    console.print(f"wrote {grid.path} ({n} samples of {name}, source {grid.source})")


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    root: RootOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if present.")] = False,
    variant: Annotated[
        str | None, typer.Option("--variant", help="Only this variant's files (e.g. mpi3d toy).")
    ] = None,
) -> None:
    """Fetch the official files of a dataset, checking their MD5 checksums."""
    from vaelens.data.download import download

    for path in download(name, root, force=force, variant=variant):
        console.print(f"ok {path}")


@data_app.command("verify")
def data_verify(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    root: RootOpt = None,
    variant: Annotated[
        str | None, typer.Option("--variant", help="Only this variant's files.")
    ] = None,
) -> None:
    """Check that a dataset's files are present with the right checksums.

    Prints one line a file; when any is missing or wrong, ends with one error line on
    stderr naming them, exit 2.
    """
    from vaelens.data.download import verify
    from vaelens.errors import DatasetError

    report = verify(name, root, variant=variant)
    if not report:
        console.print(f"{name} has no files to verify (it is generated procedurally)")
        return
    for fname, state in report.items():
        console.print(f"{fname}: {state}")
    bad = [fname for fname, state in report.items() if not state.startswith("ok")]
    if bad:
        raise DatasetError(f"{name}: {len(bad)} file(s) missing or with a wrong checksum: {bad}")


@data_app.command("build-cache")
def data_build_cache(
    name: Annotated[str, typer.Argument(help="Dataset name (dsprites).")],
    root: RootOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if present.")] = False,
) -> None:
    """Render a procedural dataset once into a packed on-disk cache (dsprites: 377 MB).

    In a terminal a bar shows the images rendered and an ETA; elsewhere one line a stage.
    """
    if name != "dsprites":
        raise typer.BadParameter(f"{name}: only dsprites has a rendered cache")
    from vaelens.data.dsprites import build_dsprites_cache

    with StageProgress("build-cache") as progress:
        path = build_dsprites_cache(root, force=force, progress=progress)
    console.print(f"wrote {path}")


# ---------------------------------------------------------------------------------------- train


def _key_values(items: list[str] | None, option: str) -> dict:
    """``["n_boot=200"]`` -> ``{"n_boot": 200}`` (YAML scalars); one-line ConfigError if malformed."""
    import yaml

    from vaelens.errors import ConfigError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option}: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{option}: cannot read the value of {item!r}") from None
    return out


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model name (vaelens models) or pkg.mod:Class. A pkg.mod:Class given here is "
        "your own choice and is trusted (its module is imported); one named by --config or a "
        "run directory needs --trust-code.",
    ),
]
TrustCodeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--trust-code",
        metavar="MODULE:ATTR",
        help="Allow importing and running the model class MODULE:ATTR when a config file, "
        "study file or run directory names it (repeatable). Only for code you trust: "
        "without it such a name is refused and only registered models are built.",
    ),
]
TrainedOpt = Annotated[
    Path | None,
    typer.Option(
        "--trained",
        help="Folder of finished run directories (e.g. from `vaelens export`): a run whose "
        "training settings one of them shares is analysed from it instead of trained.",
    ),
]


def _trust(trust_code: list[str] | None) -> frozenset[str]:
    """The ``--trust-code`` names, checked (one-line ArgumentError naming the option)."""
    from vaelens.train import normalize_trust

    return normalize_trust(list(trust_code or []), argument="--trust-code")  # type: ignore[return-value]


DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", help="Dataset name (vaelens data list).")
]
StepsOpt = Annotated[int | None, typer.Option("--steps", min=1, help="Optimiser steps.")]
EpochsOpt = Annotated[
    int | None, typer.Option("--epochs", min=1, help="Passes over the training set.")
]
TrainSeedOpt = Annotated[
    int | None, typer.Option("--seed", min=0, help="Seed of weights, noise and data order.")
]
RunOutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Run directory (resumed if it has a checkpoint).")
]
TrainConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML/YAML/JSON file with the same fields.")
]
TrainPresetOpt = Annotated[
    str | None, typer.Option("--preset", help="Start from a preset: roy2025 or dlib.")
]
TrainSourceOpt = Annotated[
    str | None, typer.Option("--source", help="Dataset source: auto, procedural, file, cache.")
]
NTrainOpt = Annotated[int | None, typer.Option("--n-train", min=1, help="Training subset size.")]
BatchSizeOpt = Annotated[int | None, typer.Option("--batch-size", min=1)]
LrOpt = Annotated[float | None, typer.Option("--lr", min=0.0)]
WarmupOpt = Annotated[
    int | None,
    typer.Option(
        "--warmup-steps", min=0, help="Linear learning-rate warm-up over this many steps."
    ),
]
PlateauOpt = Annotated[
    int | None,
    typer.Option(
        "--plateau",
        min=0,
        help="Stop early when the reconstruction loss has not improved by 1% for this many "
        "steps (0: off; config fields plateau_patience, plateau_rtol, plateau_term).",
    ),
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Model hyperparameter KEY=VALUE (repeatable)."),
]
TensorboardOpt = Annotated[
    bool | None,
    typer.Option("--tensorboard/--no-tensorboard", help="TensorBoard logs in the run directory."),
]
WandbOpt = Annotated[
    bool | None, typer.Option("--wandb/--no-wandb", help="Weights & Biases logging.")
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="'local' or 'ray'.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="Local worker processes.")]
RayAddressOpt = Annotated[
    str | None, typer.Option("--ray-address", help="Address of a running Ray cluster.")
]
TimeBudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--time-budget",
        help="Train at most this many seconds of wall-clock time in this call, then write a "
        "checkpoint and stop (status 'stopped'); the same command again resumes there.",
    ),
]


def _train_config(
    config: Path | None, preset_name: str | None, overrides: dict, params: dict
) -> TrainConfig:
    """The TrainConfig of ``vaelens train``: the file (or preset), then the options, then ``-p``."""
    from vaelens.train import config_from_dict, load_config

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if config is not None:
        cfg = load_config(config, **overrides)
        if params:
            cfg = cfg.model_copy(update={"model_params": {**cfg.model_params, **params}})
        return cfg
    data = {**({"preset": preset_name} if preset_name else {}), **overrides}
    if params:
        data["model_params"] = params
    return config_from_dict(data, source="command line")


@app.command("train")
def train_cmd(
    model: ModelOpt = None,
    dataset: DatasetOpt = None,
    steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    seed: TrainSeedOpt = None,
    out: RunOutOpt = None,
    config: TrainConfigOpt = None,
    preset_name: TrainPresetOpt = None,
    source: TrainSourceOpt = None,
    root: RootOpt = None,
    n_train: NTrainOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    warmup_steps: WarmupOpt = None,
    plateau: PlateauOpt = None,
    device: DeviceOpt = None,
    param: ParamOpt = None,
    tensorboard: TensorboardOpt = None,
    wandb: WandbOpt = None,
    progress: ProgressOpt = True,
    trust_code: TrustCodeOpt = None,
    time_budget: TimeBudgetOpt = None,
) -> None:
    """Train a VAE variant on a dataset (Adam, optional cosine decay), resumably."""
    from vaelens.train import Run, check_model_trust, train

    trust = _trust(trust_code)
    if model is not None and ":" in model:  # typed on the command line: the user's choice
        trust = trust | {model}

    overrides = {
        "model": model,
        "dataset": dataset,
        "steps": steps,
        "epochs": epochs,
        "seed": seed,
        "out": out,
        "dataset_source": source,
        "dataset_root": root,
        "n_train": n_train,
        "batch_size": batch_size,
        "lr": lr,
        "warmup_steps": warmup_steps,
        "plateau_patience": plateau,
        "device": device,
        "tensorboard": tensorboard,
        "wandb": wandb,
    }
    cfg = _train_config(config, preset_name, overrides, _key_values(param, "--param"))
    where = str(config) if config is not None else "command line"
    check_model_trust(cfg.model, trust, source=where, what="this config")
    result = train(Run.create(cfg, trust_code=trust), progress=progress, time_budget=time_budget)
    terms = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if isinstance(v, float))
    why = f" (stopped by the {result.stopped_by} rule)" if result.stopped_by else ""
    console.print(
        f"{result.status}{why}: {result.run_dir} at step {result.step}/{result.total_steps} ({terms})"
    )


@app.command("models")
def models_cmd() -> None:
    """List the model variants and their default hyperparameters."""
    from vaelens.models import list_models, model_defaults

    table = Table(title="vaelens models")
    table.add_column("name")
    table.add_column("defaults")
    for name in list_models():
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in model_defaults(name).items()))
    console.print(table)


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    dest: Annotated[Path, typer.Argument(help="New directory to write the exported run to.")],
) -> None:
    """Copy a finished run without its optimiser state (a third of the size for Adam).

    The copy is a run directory of its own (config, weights-only checkpoint, metrics):
    `vaelens analyze` reads it, `vaelens study --trained` and `vaelens demo --trained`
    analyse it in place of training the run of the same settings; it cannot be trained
    further.
    """
    from vaelens.train import export_run

    path = export_run(run_dir, dest)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    console.print(f"wrote {path} ({size / 1e6:.2f} MB)")


@app.command("analyze")
def analyze_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of `vaelens train`.")],
    n_samples: Annotated[
        int | None,
        typer.Option("--n-samples", help="Examples and intervention pairs per factor (64)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the samples, pairs and baseline (0).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory (default RUN_DIR).")
    ] = None,
    baseline: Annotated[
        bool | None,
        typer.Option("--baseline/--no-baseline", help="Analyse a random-init twin too (yes)."),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="Any other analysis setting as KEY=VALUE, e.g. -s n_boot=200 "
            "-s 'latent_values=[-2, 0, 2]' (repeatable; see vaelens.analysis.AnalysisSettings).",
        ),
    ] = None,
    trust_code: TrustCodeOpt = None,
) -> None:
    """Run the four interventions and the causal metrics on a trained run.

    Writes analysis.json and figures/ (traversals, unit responses, mediation, causal graph).
    Settings are validated by the same schema as the Python API and a study's [analysis]
    table; a bad one ends in one line naming it.
    """
    from vaelens.analysis import analyze_run, settings_from
    from vaelens.train import Run

    trust = _trust(trust_code)
    given = {"n_samples": n_samples, "seed": seed, "baseline": baseline}
    overrides = {k: v for k, v in given.items() if v is not None}
    overrides.update(_key_values(settings, "--set"))
    s = settings_from(source="vaelens analyze", **overrides)
    with StageProgress("analyze") as progress:
        path = analyze_run(Run.open(run_dir, trust_code=trust), s, out=out, progress=progress)
    _print_interchange(path)
    console.print(f"wrote {path} and {path.parent / 'figures'}")


def _print_interchange(path: Path) -> None:
    """The trained model's interchange matrix (shares with CIs; * = edge) and minimal sets."""
    from vaelens.analysis import load_analysis
    from vaelens.report.interchange import latent_set, share_cell

    inter = load_analysis(path).trained.interchange
    if inter is None:
        return
    edges = inter.edge_set
    approx = ", matched pairs: approximate" if inter.pairs == "matched" else ""
    table = Table(title=f"interchange shares (95% CI; * = edge of the causal graph{approx})")
    table.add_column("latent")
    for name in inter.factor_names:
        table.add_column(name)
    for i in range(inter.share.shape[0]):
        cells = [
            share_cell(inter.share[i, f], *inter.share_ci[i, f], (i, f) in edges)
            for f in range(len(inter.factor_names))
        ]
        table.add_row(f"z{i}", *cells)
    sets = [latent_set(chosen) if chosen else "n/a" for chosen in inter.min_sets]
    table.add_row("minimal set", *sets)
    console.print(table)


@app.command("metrics")
def metrics_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory of `vaelens train`.")],
    names: Annotated[
        str, typer.Option("--metrics", help="Comma-separated metric names, or 'all'.")
    ] = "all",
    preset: Annotated[
        str, typer.Option("--preset", help="'fast' or 'faithful' (reference sizes).")
    ] = "fast",
    seed: Annotated[int, typer.Option("--seed", help="Random state of the metrics.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="JSON file (default RUN_DIR/disentanglement.json)."),
    ] = None,
    trust_code: TrustCodeOpt = None,
) -> None:
    """Disentanglement metrics (DCI, MIG, SAP, FactorVAE, BetaVAE, IRS, modularity) of a trained run."""
    from vaelens.io import atomic_write_json
    from vaelens.metrics import compute_metrics, representation_fn
    from vaelens.train import Run

    run = Run.open(run_dir, trust_code=_trust(trust_code))
    wanted = "all" if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    with StageProgress("metrics") as progress:
        result = compute_metrics(
            wanted,
            repr_fn=representation_fn(run.model()),
            dataset=run.dataset(),
            preset=preset,
            random_state=seed,
            progress=progress,
        )
    path = out or run.artifact("disentanglement.json")
    atomic_write_json(path, result)
    table = Table(title=f"{run_dir} ({preset})")
    table.add_column("metric")
    table.add_column("score")
    table.add_column("value", justify="right")
    for metric, scores in result.items():
        for key, value in scores.items():
            table.add_row(metric, key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"wrote {path}")


# ---------------------------------------------------------------------------------------- study

study_app = typer.Typer(
    help="Studies: architectures x datasets x seeds, resumable, local or on Ray.",
    invoke_without_command=True,
)
app.add_typer(study_app, name="study")


@study_app.callback()
def study(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Study file (.toml/.yaml); or use --preset."),
    ] = None,
    preset_name: Annotated[
        str | None,
        typer.Option(
            "--preset", help="Built-in study: demo, demo-long, quick, standard, paper-v1 or paper."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Study directory (default: studies/NAME).")
    ] = None,
    executor: ExecutorOpt = "local",
    workers: WorkersOpt = None,
    ray_address: RayAddressOpt = None,
    storage: Annotated[
        Path | None,
        typer.Option("--storage", help="Run directories on storage the cluster shares."),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run failed runs again.")
    ] = False,
    max_runs: Annotated[
        int | None, typer.Option("--max-runs", min=1, help="Start at most this many runs.")
    ] = None,
    trust_code: TrustCodeOpt = None,
    trained: TrainedOpt = None,
) -> None:
    """Run (or resume) a study; finished runs are skipped, half-finished ones resume."""
    if ctx.invoked_subcommand is not None:
        return
    from vaelens.study.config import load_study_config
    from vaelens.study.presets import preset
    from vaelens.study.runner import check_study_trust, run_study

    if (config is None) == (preset_name is None):
        raise typer.BadParameter("give --config FILE or --preset NAME (one of them)")
    trust = _trust(trust_code)
    cfg = preset(preset_name) if preset_name else load_study_config(config)
    where = str(config) if config is not None else f"preset {preset_name!r}"
    check_study_trust(cfg, trust, source=where)
    study_dir = out or Path("studies") / cfg.name

    with StudyProgress(cfg.name) as event:
        counts = run_study(
            cfg,
            study_dir,
            executor=executor,
            workers=workers,
            ray_address=ray_address,
            storage=storage,
            retry_failed=retry_failed,
            max_runs=max_runs,
            on_event=event,
            trust_code=trust,
            trained=trained,
        )
    console.print(f"study {cfg.name} in {study_dir}: {counts}")


@study_app.command("status")
def study_status_cmd(
    study_dir: Annotated[Path, typer.Argument(help="Study directory.")],
    storage: Annotated[
        Path | None,
        typer.Option("--storage", help="Where the run directories are, if not in STUDY_DIR."),
    ] = None,
) -> None:
    """Print a study's progress: runs by status, each run's stage and training step, and
    the errors of failed runs."""
    from vaelens.study.runner import study_status

    st = study_status(study_dir, storage=storage)
    c = st["counts"]
    console.print(
        f"study {st['name']}: {c['completed']}/{st['total']} completed, {c['failed']} failed, "
        f"{c['running']} running, {c['pending']} pending"
    )
    for row in st["runs"]:
        console.print(f"  {_run_line(row)}")
    for row in st["failed"]:
        console.print(f"  [red]failed[/red] {row['run_id']}: {row['error']}")


def _run_line(row: dict) -> str:
    """``run_id  status  stage  step/total`` of one run of ``study status``."""
    step = ""
    if row.get("step") is not None and row.get("total_steps"):
        step = f"step {row['step']}/{row['total_steps']}"
    stage = row.get("stage") or "-"
    return f"{row['run_id']:<40} {row['status']:<9} {stage:<8} {step}".rstrip()


@study_app.command("export")
def study_export(
    study_dir: Annotated[Path, typer.Argument(help="Study directory.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory.")] = None,
) -> None:
    """Export a study's results table to CSV and Parquet."""
    from vaelens.study.runner import DB_NAME
    from vaelens.study.store import ResultStore

    db = study_dir / DB_NAME
    if not db.is_file():
        raise typer.BadParameter(f"{study_dir}: no study here (missing {DB_NAME})")
    with ResultStore(db) as store:
        for path in store.export(out or study_dir):
            console.print(f"wrote {path}")


# --------------------------------------------------------------------------------------- report


class _Bar:
    """A rich bar with an ETA, started on demand in a terminal (see :func:`eta_progress`)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def _start(self, template: str, total: int, **fields: Any) -> None:
        from vaelens.train.logging import eta_progress

        self.bar = eta_progress(template, eta_label=True, console=console)
        self.task = self.bar.add_task(self.label, total=total, **fields)
        self.bar.start()


class StageProgress(_Bar):
    """``progress(stage, done, total)`` callbacks as a bar with an ETA in a terminal, else
    one line per stage (repeated calls of one stage, e.g. per chunk, print nothing more)."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.stage: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not console.is_terminal:
            if stage != self.stage:
                console.print(f"{self.label}: {stage}")
            self.stage = stage
            return
        if self.bar is None:
            self._start(f"[bold]{self.label}" + " {task.fields[stage]}", total, stage=stage)
        self.bar.update(self.task, completed=done, stage=stage)


class StudyProgress(_Bar):
    """The study driver's events as lines (``start``/``done``/``failed`` RUN_ID), and in a
    terminal a bar over the pending runs with the time elapsed and an ETA."""

    def _print(self, text: str) -> None:
        (self.bar.console if self.bar is not None else console).print(text)

    def __call__(self, kind: str, run_id: str, info: dict) -> None:
        if kind == "plan":
            pending = int(info.get("pending", 0))
            if "adopted" in info:
                self._print(f"training of {info['adopted']} of {pending} pending runs adopted")
            if console.is_terminal and pending:
                self._start(f"[bold]study {self.label}", pending)
        elif kind == "adopt":
            self._print(f"[cyan]adopt[/cyan] {run_id}: training from {info.get('from')}")
        elif kind == "start":
            self._print(f"[cyan]start[/cyan] {run_id}")
        elif kind == "done":
            if info.get("ok"):
                self._print(f"[green]done[/green]  {run_id}")
            else:
                self._print(f"[red]failed[/red] {run_id}: {info.get('error')}")
            if self.bar is not None:
                self.bar.advance(self.task)


@app.command("report")
def report_cmd(
    study_dir: Annotated[Path, typer.Argument(help="Study directory.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default STUDY_DIR/report)."),
    ] = None,
    n_boot: Annotated[
        int, typer.Option("--n-boot", min=0, help="Bootstrap resamples of the CIs.")
    ] = 2000,
    mediation_factor: Annotated[
        str | None,
        typer.Option(
            "--mediation-factor", help="Factor of the mediation table (default: the first)."
        ),
    ] = None,
) -> None:
    """Write the study's self-contained HTML report with its tables as CSV and Markdown.

    In a terminal a bar shows its stages and an ETA; elsewhere one line a stage.
    """
    from vaelens.report import build_report

    with StageProgress("report") as progress:
        path = build_report(
            study_dir, out, n_boot=n_boot, mediation_factor=mediation_factor, progress=progress
        )
    console.print(f"wrote {path}")


# ------------------------------------------------------------------------------------------ zoo

zoo_app = typer.Typer(
    help="disentanglement_lib's pretrained zoo: import its models as vaelens runs.",
    no_args_is_help=True,
)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("import")
def zoo_import(
    model: Annotated[
        Path, typer.Argument(help="A disentanglement_lib model zip (<n>.zip) or its directory.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run directory.")
    ] = False,
) -> None:
    """Import one zoo model: its weights, gin config and scores -> a vaelens run directory.

    The run then works with `vaelens analyze` and `vaelens metrics`; zoo.json keeps the gin
    settings and the library's own scores. No code from the model is run.
    """
    from vaelens.zoo import import_model, read_zoo_info

    path = import_model(model, out, overwrite=overwrite)
    info = read_zoo_info(path)
    mapped = info["mapped"]
    params = ", ".join(
        f"{k}={v}" for k, v in mapped["model_params"].items() if k not in ("backbone", "likelihood")
    )
    console.print(
        f"imported {model} -> {path}: {mapped['model']} ({params}) on {mapped['dataset']}",
        soft_wrap=True,
    )


@zoo_app.command("study")
def zoo_study_cmd(
    folder: Annotated[Path, typer.Argument(help="A folder of zoo model zips or directories.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Study directory.")],
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="An analysis setting of the study as KEY=VALUE, e.g. -s n_boot=200 "
            "-s 'metrics=[mig, dci]' (repeatable; see vaelens.study.config.StudyAnalysis).",
        ),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run failed models again.")
    ] = False,
    executor: ExecutorOpt = "local",
    workers: WorkersOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Import every model in FOLDER, analyse and score it, record it as a study.

    `vaelens report OUT` then reports it; the library's own scores are stored as
    dlib.<metric>.<score> beside ours (see `vaelens study export OUT`). Resumable. Models
    run in a pool of --workers processes (--workers 1: one after another, in this process)
    or as Ray tasks (--executor ray), like `vaelens study`.
    """
    from vaelens.study.zoo import zoo_study

    def event(kind: str, run_id: str, info: dict) -> None:
        if kind == "done":
            state = "done" if info.get("ok") else f"failed {info.get('error')}"
            console.print(f"{state} {run_id}", soft_wrap=True, markup=False)

    analysis = _key_values(settings, "--set")
    counts = zoo_study(
        folder,
        out,
        analysis=analysis,
        retry_failed=retry_failed,
        on_event=event,
        executor=executor,
        workers=workers,
        ray_address=ray_address,
    )
    console.print(f"zoo study {out}: {counts}", soft_wrap=True)


@zoo_app.command("url")
def zoo_url(
    number: Annotated[int, typer.Argument(help="Model number of unsupervised_study_v1.")],
) -> None:
    """Print the download address of zoo model NUMBER."""
    from vaelens.zoo import model_url

    console.print(model_url(number), soft_wrap=True)


# ----------------------------------------------------------------------------------------- demo


@app.command("demo")
def demo(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: out/PRESET, e.g. out/demo)."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Local worker processes.")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed of the dataset grids.")] = 0,
    study_preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="Built-in study to run: demo (default), demo-long (60,000 steps a run, at which "
            "its network draws squares: about 2.1 h on 2 CPU cores) or quick.",
        ),
    ] = "demo",
    trained: TrainedOpt = None,
) -> None:
    """The main job: sample grids of the built-in data, the demo study, and its report.

    The demo study: VAE and beta-VAE on procedural dSprites, 3 seeds, 3,000 steps: long
    enough to learn position and scale (not to draw shapes), analysed with interchange
    interventions, unit circuits, alignment search and the referee's controls (about 12
    minutes on 2 CPU cores). `make demo` runs demo-long with --trained models/demo-long:
    the repository's six 60,000-step runs, analysed without training (about 7 minutes).
    Resumable: run it again after an interruption and finished runs are kept.
    """
    from vaelens.data import list_datasets
    from vaelens.data.render import write_sample_grids
    from vaelens.report import build_report
    from vaelens.study.presets import PRESETS, preset
    from vaelens.study.runner import run_study

    cfg = preset(study_preset)  # an unknown preset fails before anything is written
    if trained is not None:
        from vaelens.study.adopt import find_trained

        find_trained(trained)  # so does a bad --trained folder
    out = out if out is not None else Path("out") / study_preset
    out.mkdir(parents=True, exist_ok=True)
    names = [spec.name for spec in list_datasets() if "procedural" in spec.sources]
    targets = [(name, out / "datasets" / f"{name}.png") for name in names]
    with StageProgress("render") as progress:
        grids = write_sample_grids(targets, seed=seed, source="procedural", progress=progress)
    for grid in grids:
        console.print(f"wrote {grid.path}")
    study_dir = out / "study"

    with StudyProgress(cfg.name) as event:
        counts = run_study(cfg, study_dir, workers=workers, on_event=event, trained=trained)
    console.print(f"{cfg.name} study: {counts}")
    with StageProgress("report") as progress:
        report = build_report(study_dir, progress=progress)
    console.print(f"report: {report}")
    if cfg.name == "demo":
        short, long = (PRESETS[n]["train"]["steps"] for n in ("demo", "demo-long"))
        console.print(
            f"The demo's models train {short:,} steps: enough for position and scale, not to "
            f"draw shapes (docs/training.md). `vaelens demo --preset demo-long` trains {long:,} "
            "a run into out/demo-long (about 2 hours on 2 CPU cores), at which the network "
            "draws squares and ellipses; `make demo` analyses the repository's six such runs "
            "(models/demo-long) without training them.",
            soft_wrap=True,
        )


def _click_exceptions() -> dict[str, tuple[type[BaseException], ...]]:
    """click's exception classes: typer's vendored copy (typer >= 0.2x) and click itself."""
    modules = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            modules.append(__import__(name, fromlist=["UsageError"]))
        except ImportError:
            continue
    return {
        kind: tuple(getattr(m, kind) for m in modules if hasattr(m, kind))
        for kind in ("UsageError", "ClickException", "Abort", "Exit")
    }


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _os_error(exc: OSError) -> str:
    """``PATH: what went wrong`` for a file the command could not read or write."""
    target = exc.filename2 if exc.filename2 is not None else exc.filename
    if target is None or not exc.strerror:
        return _one_line(exc)
    return f"{target}: {exc.strerror}"


def _usage_error(exc: Any) -> str:
    """A click usage error as one line: the command, what was wrong, where to look."""
    where = exc.ctx.command_path if exc.ctx is not None else "vaelens"
    return f"{where}: {_one_line(exc.format_message())} (see {where} --help)"


def _internal_error(exc: BaseException) -> str:
    """Write the traceback to a log file; the line the user sees names it."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile(
        "w", prefix="vaelens-error-", suffix=".log", delete=False
    ) as fh:
        traceback.print_exception(exc, file=fh)
    return (
        f"internal error (a bug in vaelens, please report it): {type(exc).__name__}: "
        f"{_one_line(exc)}; the traceback is in {fh.name}"
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every error ends in one line on stderr.

    Exit 2 for bad input (a vaelens error, a usage error, a file that cannot be read or
    written), 1 for an internal error (whose traceback goes to a log file it names),
    130 on Ctrl-C.
    """
    ce = _click_exceptions()
    code, message = 0, None
    try:
        returned = app(args=argv, standalone_mode=False)
        code = returned if isinstance(returned, int) else 0
    except VaelensError as exc:
        code, message = 2, _one_line(exc)
    except ce["UsageError"] as exc:
        code, message = 2, _usage_error(exc)
    except ce["ClickException"] as exc:
        code, message = 2, _one_line(exc.format_message())  # type: ignore[attr-defined]
    except OSError as exc:
        code, message = 2, _os_error(exc)
    except (KeyboardInterrupt, *ce["Abort"]):
        code, message = 130, "interrupted"
    except ce["Exit"] as exc:
        code = int(exc.exit_code)  # type: ignore[attr-defined]
    except Exception as exc:
        code, message = 1, _internal_error(exc)
    if message is not None:
        from rich.text import Text

        err_console.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
