"""Built-in studies.

- ``paper``: the study of the extended version of Roy (2025): 6 architectures x 5 datasets x
  3 seeds = 90 runs with its settings (Adam 1e-3, cosine decay, weight decay 1e-5, batch 64,
  50 epochs, beta 4, gamma 40). It needs the official dataset files and GPUs (``--executor ray``).
- ``paper-v1``: the 3 architectures of the first version of Roy (2025) (VAE, beta-VAE,
  FactorVAE) on the synthetic causal dataset and procedural dSprites, 3 seeds, same settings.
- ``standard``: disentanglement_lib's budget for GPU users: 5 architectures (its network,
  ``backbone="dlib"``) x the 4 factorial datasets x 3 seeds = 60 runs of 300,000 steps at batch
  64, Adam lr 1e-4 (Locatello et al. 2019), with mid-range hyper-parameters of its sweep
  (beta 4; FactorVAE gamma 30; beta-TC-VAE beta 6; DIP-VAE-II lambda_od 10) and the full
  analysis. Expected time: see README ("Training budgets").
- ``demo``: what ``make demo-train`` runs: VAE and beta-VAE on procedural dSprites, 3 seeds (so
  that Table 1 and the architecture tests have t intervals), 3,000 steps on
  disentanglement_lib's network at half width with the settings ``benchmarks/convergence.py``
  found most useful per CPU minute (docs/training.md), long enough to learn position and
  scale (not to draw shapes), with the interchange, unit circuits, alignment search and the
  referee's controls: the README gives the time measured from a fresh clone.
- ``demo-long``: the demo's study with 20 times the steps (60,000 a run), the budget at which
  the demo's network draws squares and ellipses; each seed keeps about the structure it had
  at 3,000 steps (docs/training.md: about 2,550 s a run, two at a time on 2 CPU cores, so
  about 2.1 hours for the 6 runs; not measured on a GPU). ``make demo`` runs it with its
  training adopted from the repository's ``models/demo-long`` (``--trained``).
- ``quick``: 3 architectures (half-width roy2025 backbone) x synthetic and procedural dSprites x
  2 seeds, 600 steps each: finishes on 2 CPU cores in minutes and still trains models well
  past their untrained baseline.
"""

from __future__ import annotations

from typing import Any

from vaelens.errors import ConfigError
from vaelens.study.config import StudyConfig, study_config_from_dict

__all__ = ["PRESETS", "preset"]

_ROY2025_TRAIN: dict[str, Any] = {
    "lr": 1e-3,
    "batch_size": 64,
    "epochs": 50,
    "schedule": "cosine",
    "weight_decay": 1e-5,
    "checkpoint_every": 2000,
}
_ROY2025_PARAMS: dict[str, dict[str, Any]] = {
    "beta_vae": {"beta": 4.0},
    "factor_vae": {"gamma": 40.0, "disc_lr": 5e-5},
}

#: the analysis of the GPU presets (paper, paper-v1, standard): disentanglement_lib's metric
#: settings and the referee's controls with a 5,000-step decoder retraining
_FULL_ANALYSIS: dict[str, Any] = {
    "n_samples": 512,
    "metrics_preset": "faithful",
    "controls": True,
    "control_steps": 5000,
}

#: the metric sample sizes of the CPU presets (demo, demo-long, quick): fast preset, smaller
#: samples
_SMALL_METRICS: dict[str, Any] = {
    "metrics_num_train": 3000,
    "metrics_num_test": 1500,
    "metrics_overrides": {
        "factor_vae": {"num_train": 400, "num_eval": 200, "num_variance_estimate": 1000},
        "beta_vae": {"num_train": 400, "num_eval": 200},
    },
}

#: the demo's training: tuned for useful models per CPU minute (docs/training.md)
_DEMO_TRAIN: dict[str, Any] = {
    "steps": 3000,
    "batch_size": 64,
    "lr": 1e-3,
    "n_train": 20000,
    "checkpoint_every": 1000,
}
#: the demo's architectures, network and analysis (shared by ``demo`` and ``demo-long``)
_DEMO_STUDY: dict[str, Any] = {
    "architectures": ["vae", "beta_vae"],
    "datasets": ["dsprites"],
    "seeds": [0, 1, 2],
    "model_params": {
        "vae": {"backbone": "dlib", "width": 0.5},
        "beta_vae": {"backbone": "dlib", "width": 0.5, "beta": 4.0},
    },
    "dataset_options": {"dsprites": {"source": "procedural"}},
    "analysis": {
        "n_samples": 64,
        "metrics_preset": "fast",
        "controls": True,
        "control_steps": 500,
        "circuits": True,
        "alignment": True,
        "alignment_k": 2,
        "alignment_steps": 100,
        **_SMALL_METRICS,
    },
}

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "name": "paper",
        "architectures": ["vae", "beta_vae", "factor_vae", "beta_tc_vae", "dip_vae_ii", "vq_vae"],
        "datasets": ["dsprites", "shapes3d", "mpi3d", "celeba", "smallnorb"],
        "seeds": [0, 1, 2],
        "train": dict(_ROY2025_TRAIN),
        "model_params": _ROY2025_PARAMS,
        "dataset_options": {"dsprites": {"source": "file"}, "shapes3d": {"source": "file"}},
        "analysis": dict(_FULL_ANALYSIS),
        "resources": {"num_cpus": 4, "num_gpus": 1},
    },
    "paper-v1": {
        "name": "paper-v1",
        "architectures": ["vae", "beta_vae", "factor_vae"],
        "datasets": ["synthetic", "dsprites"],
        "seeds": [0, 1, 2],
        "train": dict(_ROY2025_TRAIN),
        "model_params": _ROY2025_PARAMS,
        "dataset_options": {"dsprites": {"source": "auto"}},
        "analysis": dict(_FULL_ANALYSIS),
        "resources": {"num_cpus": 4, "num_gpus": 1},
    },
    "standard": {
        "name": "standard",
        "architectures": ["vae", "beta_vae", "factor_vae", "beta_tc_vae", "dip_vae_ii"],
        "datasets": ["dsprites", "shapes3d", "mpi3d", "smallnorb"],
        "seeds": [0, 1, 2],
        "train": {"steps": 300_000, "batch_size": 64, "lr": 1e-4, "checkpoint_every": 10_000},
        "model_params": {
            "vae": {"backbone": "dlib"},
            "beta_vae": {"backbone": "dlib", "beta": 4.0},
            "factor_vae": {"backbone": "dlib", "gamma": 30.0},
            "beta_tc_vae": {"backbone": "dlib", "beta": 6.0},
            "dip_vae_ii": {"backbone": "dlib", "lambda_od": 10.0},
        },
        "dataset_options": {"dsprites": {"source": "file"}, "shapes3d": {"source": "file"}},
        "analysis": {**_FULL_ANALYSIS, "circuits": True, "alignment": True},
        "resources": {"num_cpus": 4, "num_gpus": 1},
    },
    "demo": {"name": "demo", **_DEMO_STUDY, "train": dict(_DEMO_TRAIN)},
    "demo-long": {
        "name": "demo-long",
        **_DEMO_STUDY,
        "train": {**_DEMO_TRAIN, "steps": 60_000, "checkpoint_every": 5000},
    },
    "quick": {
        "name": "quick",
        "architectures": ["vae", "beta_vae", "factor_vae"],
        "datasets": ["synthetic", "dsprites"],
        "seeds": [0, 1],
        "train": {
            "steps": 600,
            "batch_size": 64,
            "lr": 1e-3,
            "schedule": "cosine",
            "n_train": 20000,
            "checkpoint_every": 200,
        },
        # half-width roy2025 architecture: 4x fewer FLOPs, so that 12 runs fit in minutes
        "model_params": {
            "vae": {"width": 0.5},
            "beta_vae": {"width": 0.5, "beta": 4.0},
            "factor_vae": {"width": 0.5, "gamma": 10.0},
        },
        "dataset_options": {"dsprites": {"source": "procedural"}},
        "analysis": {
            "n_samples": 64,
            "metrics_preset": "fast",
            # the referee's controls, with a short decoder retraining (the models train 600)
            "controls": True,
            "control_steps": 200,
            **_SMALL_METRICS,
        },
    },
}


def preset(name: str) -> StudyConfig:
    """The built-in study ``name`` (one of :data:`PRESETS`: ``paper``, ``paper-v1``,
    ``standard``, ``quick``, ``demo``, ``demo-long``)."""
    if name not in PRESETS:
        raise ConfigError(
            f"preset: unknown study preset {name!r}; expected one of {sorted(PRESETS)}"
        )
    return study_config_from_dict(PRESETS[name], f"preset {name}")
