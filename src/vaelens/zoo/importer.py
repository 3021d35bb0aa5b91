"""One disentanglement_lib model (zip or directory) -> a vaelens run directory.

:func:`import_model` reads the model member by member (:func:`~vaelens.zoo.archive.read_model`),
parses its ``train.gin`` (:func:`~vaelens.zoo.gin.parse_gin`, no eval), maps the method and
its hyperparameters onto a registry model with ``backbone="dlib"`` (:data:`METHODS`), loads
the TF Hub module's weights through :func:`~vaelens.zoo.dlib.dlib_state_dict` and writes a
run directory that :meth:`vaelens.train.Run.open` reads like a trained one:

- ``checkpoints/step_<N>.{safetensors,json}`` (:func:`vaelens.train.checkpoint.save_checkpoint`,
  the sidecar's ``model`` block with ``name`` and ``hparams``), ``N`` = ``model.training_steps``;
- ``config.json``: a :class:`~vaelens.train.TrainConfig` (model, dataset, seed, model_params,
  batch size, learning rate; ``steps`` = ``model.training_steps``, or the placeholder ``1``
  when the gin file does not say, recorded as ``null`` in ``zoo.json``);
- ``zoo.json``: where it came from, the model number (from a ``<n>.zip`` / ``<n>/`` name),
  the gin bindings as parsed, and the library's own ``train_results`` and scores;
- ``status.json``: ``completed``.

The directory is assembled beside ``out_run_dir`` and renamed into place, so a failed
import leaves nothing half-written. Only the conv architecture (``@conv_encoder`` +
``@deconv_decoder``) and ``@bernoulli_loss`` on logits are supported; anything else is one
:class:`~vaelens.errors.ConfigError` line naming the gin file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vaelens.errors import CheckpointError, ConfigError
from vaelens.io import atomic_write_json
from vaelens.zoo.archive import TRAIN_GIN, TRAIN_RESULTS, VARIABLES, ModelFiles, read_model
from vaelens.zoo.datasets import vaelens_dataset
from vaelens.zoo.dlib import dlib_state_dict
from vaelens.zoo.gin import GinRef, gin_to_json, parse_gin
from vaelens.zoo.tfckpt import CheckpointReader

__all__ = ["METHODS", "ZOO_INFO", "import_model", "read_zoo_info", "zoo_settings"]

ZOO_INFO = "zoo.json"
#: ``model.model`` -> our registry model (``dip_vae`` picks ``_i`` / ``_ii`` by ``dip_type``)
METHODS = ("vae", "beta_tc_vae", "factor_vae", "dip_vae", "annealed_vae")
_FORMAT = 1


def _get(b: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in b:
        raise ConfigError(f"{where}: {key} is not bound (expected it for this model)")
    v = b[key]
    if isinstance(v, bool) or not isinstance(v, kind):
        raise ConfigError(f"{where}: {key} = {gin_to_json(v)!r}: expected {_kind(kind)}")
    return v


def _kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _num(b: dict[str, Any], key: str, where: str) -> float:
    return float(_get(b, key, where, (int, float)))


def _ref(b: dict[str, Any], key: str) -> str | None:
    v = b.get(key)
    return v.name.rsplit(".", 1)[-1] if isinstance(v, GinRef) else None


def zoo_settings(bindings: dict[str, Any], source: str) -> dict[str, Any]:
    """What the gin ``bindings`` say, in vaelens terms.

    Returns ``{"model", "model_params", "dataset", "seed", "steps", "batch_size", "lr",
    "adam_betas"}`` (``steps``/``batch_size``/``lr`` ``None`` when unbound). ``source`` names the gin file
    in the one-line :class:`ConfigError` for an unsupported method, architecture or loss.
    """
    method = _supported_method(bindings, source)
    _check_conv_bernoulli(bindings, source)
    latent = _get(bindings, "encoder.num_latent", source, int)
    if latent < 1:
        raise ConfigError(f"{source}: encoder.num_latent = {latent}: expected at least 1")
    name, params = _method_params(bindings, method, source)
    params.update(latent_dim=latent, backbone="dlib", likelihood="bernoulli")
    dataset = vaelens_dataset(bindings.get("dataset.name"), source=f"{source}: dataset.name")
    out: dict[str, Any] = {"model": name, "model_params": params, "dataset": dataset}
    out.update(_run_settings(bindings, source))
    return out


def _supported_method(bindings: dict[str, Any], source: str) -> str:
    """``model.model``'s name, one of :data:`METHODS`; else a :class:`ConfigError`."""
    method = _ref(bindings, "model.model")
    if method not in METHODS:
        got = gin_to_json(bindings.get("model.model"))
        raise ConfigError(
            f"{source}: model.model = {got!r} is not supported "
            f"(expected one of {', '.join('@' + m + '()' for m in METHODS)})"
        )
    return method


def _check_conv_bernoulli(bindings: dict[str, Any], source: str) -> None:
    """The conv encoder/decoder and a Bernoulli loss on logits, or a :class:`ConfigError`."""
    enc, dec = _ref(bindings, "encoder.encoder_fn"), _ref(bindings, "decoder.decoder_fn")
    if enc != "conv_encoder" or dec != "deconv_decoder":
        got = f"{gin_to_json(bindings.get('encoder.encoder_fn'))!r} + "
        got += f"{gin_to_json(bindings.get('decoder.decoder_fn'))!r}"
        raise ConfigError(
            f"{source}: encoder.encoder_fn / decoder.decoder_fn = {got}: only the conv "
            "architecture is supported (expected @conv_encoder + @deconv_decoder)"
        )
    loss = _ref(bindings, "reconstruction_loss.loss_fn")
    if loss != "bernoulli_loss":
        got = gin_to_json(bindings.get("reconstruction_loss.loss_fn"))
        raise ConfigError(
            f"{source}: reconstruction_loss.loss_fn = {got!r} is not supported "
            "(expected @bernoulli_loss, our likelihood='bernoulli')"
        )
    activation = bindings.get("reconstruction_loss.activation", "logits")
    if activation != "logits":
        raise ConfigError(
            f"{source}: reconstruction_loss.activation = {activation!r} is not supported "
            "(expected 'logits')"
        )


def _method_params(
    bindings: dict[str, Any], method: str, source: str
) -> tuple[str, dict[str, Any]]:
    """Our registry model name and its method hyperparameters for dlib's ``method``."""
    params: dict[str, Any] = {}
    if method == "vae":
        name, params["beta"] = "beta_vae", _num(bindings, "vae.beta", source)
        params["mode"] = "higgins"
    elif method == "beta_tc_vae":
        name = "beta_tc_vae"
        params.update(alpha=1.0, beta=_num(bindings, "beta_tc_vae.beta", source), gamma=1.0)
        params["estimator"] = "mws"
    elif method == "factor_vae":
        name, params["gamma"] = "factor_vae", _num(bindings, "factor_vae.gamma", source)
    elif method == "dip_vae":
        name = _dip_vae_params(bindings, source, params)
    else:  # annealed_vae: Burgess et al.'s capacity form of our beta_vae
        name = "beta_vae"
        _annealed_vae_params(bindings, source, params)
    return name, params


def _dip_vae_params(bindings: dict[str, Any], source: str, params: dict[str, Any]) -> str:
    """Fill ``params`` with DIP-VAE's ``lambda_od``/``lambda_d``; return ``dip_vae_i``/``_ii``."""
    dip_type = _get(bindings, "dip_vae.dip_type", source, str)
    if dip_type not in ("i", "ii"):
        raise ConfigError(f"{source}: dip_vae.dip_type = {dip_type!r}: expected 'i' or 'ii'")
    name = f"dip_vae_{dip_type}"
    lambda_od = _num(bindings, "dip_vae.lambda_od", source)
    params.update(
        lambda_od=lambda_od,
        lambda_d=_num(bindings, "dip_vae.lambda_d_factor", source) * lambda_od,
    )
    return name


def _annealed_vae_params(bindings: dict[str, Any], source: str, params: dict[str, Any]) -> None:
    """Fill ``params`` with the capacity-mode ``beta_vae`` settings of an annealed VAE."""
    steps = _get(bindings, "annealed_vae.iteration_threshold", source, int)
    if steps < 1:
        raise ConfigError(
            f"{source}: annealed_vae.iteration_threshold = {steps}: expected at least 1"
        )
    params.update(
        mode="capacity",
        gamma=_num(bindings, "annealed_vae.gamma", source),
        c_max=_num(bindings, "annealed_vae.c_max", source),
        c_steps=steps,
    )


def _run_settings(bindings: dict[str, Any], source: str) -> dict[str, Any]:
    """``{"seed", "steps", "batch_size", "lr", "adam_betas"}``: the seed checked, the rest
    ``None`` if unusable (Adam's betas default to TensorFlow's 0.9 and 0.999 when unbound)."""
    seed = bindings.get("model.random_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{source}: model.random_seed = {seed!r}: expected an integer >= 0")
    out: dict[str, Any] = {"seed": seed}
    for key, field in (("model.training_steps", "steps"), ("model.batch_size", "batch_size")):
        v = bindings.get(key)
        out[field] = v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else None
    lr = bindings.get("AdamOptimizer.learning_rate")
    ok = isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0
    out["lr"] = float(lr) if ok else None
    betas = [bindings.get(f"AdamOptimizer.beta{i}", d) for i, d in ((1, 0.9), (2, 0.999))]
    ok = all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
    out["adam_betas"] = tuple(float(b) for b in betas) if ok else None
    return out


def _scores(files: ModelFiles) -> dict[str, dict[str, Any]]:
    """``"<representation>/<metric>" -> {score: value}`` of the library's own results."""
    out: dict[str, dict[str, Any]] = {}
    for key, text in sorted(files.scores.items()):
        member = f"metrics/{key}/results/json/evaluation_results.json"
        out[key] = _scalars(text, f"{files.source}: {member}")
    return out


def _scalars(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{where}: not valid JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(data).__name__}")
    out = {}
    for k, v in data.items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[str(k).removeprefix("evaluation_results.")] = v
    return out


def _model_number(path: Path) -> int | None:
    stem = path.name[: -len(".zip")] if path.name.endswith(".zip") else path.name
    return int(stem) if re.fullmatch(r"\d{1,5}", stem) else None


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory (expected a new run directory)")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"{out}: exists and is not empty; pass overwrite=True (--overwrite)")
    if not (out / "config.json").is_file():
        raise ConfigError(
            f"{out}: not empty and not a vaelens run directory (no config.json); refusing to "
            "replace it even with overwrite"
        )


def import_model(
    model_dir_or_zip: str | os.PathLike[str],
    out_run_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Import one disentanglement_lib model into a new vaelens run directory; return its path.

    Refuses an existing non-empty ``out_run_dir`` unless ``overwrite`` (and even then only a
    vaelens run directory, one with ``config.json``, is replaced). Errors are one line
    naming the file: :class:`ConfigError` (gin), :class:`CheckpointError` (weights, zip),
    :class:`~vaelens.errors.DatasetError` (dataset name).
    """
    import torch

    from vaelens.data import get_spec
    from vaelens.models import build_model
    from vaelens.train import TrainConfig

    src = Path(model_dir_or_zip).expanduser()
    out = Path(out_run_dir).expanduser()
    _check_out(out, overwrite)
    files = read_model(src)
    gin_file = f"{files.source}: {TRAIN_GIN}"
    bindings = parse_gin(files.gin, source=gin_file)
    s = zoo_settings(bindings, gin_file)
    spec = get_spec(s["dataset"])
    channels = int(spec.image_shape[0])
    state = _dlib_weights(files, s["model_params"]["latent_dim"], channels)
    torch.manual_seed(s["seed"])
    model = build_model(s["model"], in_channels=channels, **s["model_params"])
    others = _load_weights(model, state, s["model"], files.source)

    hparams = model.hparams()
    config = TrainConfig(**_config_fields(s, hparams, out)).to_json_dict()
    info = _zoo_info(src, files, bindings, s, others)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    try:
        _write_run(tmp, out, model, s, hparams, list(spec.image_shape), config, info)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _dlib_weights(files: ModelFiles, latent: int, channels: int) -> dict[str, Any]:
    """The TF checkpoint's encoder/decoder variables as our state-dict entries."""
    prefix = f"{files.source}: {VARIABLES}"  # errors name <source>: <member>
    reader = CheckpointReader(files.index, files.shard, source=prefix)
    tensors = {n: reader.read(n) for n in reader.names() if n.startswith(("encoder/", "decoder/"))}
    return dlib_state_dict(tensors, num_latent=latent, channels=channels, source=files.source)


def _load_weights(model: Any, state: dict[str, Any], name: str, source: str) -> list[str]:
    """Load ``state`` into ``model``'s encoder/decoder (eval mode); return the keys left as built."""
    own = model.state_dict()
    mapped = [k for k in own if k.startswith(("encoder.", "decoder."))]
    if sorted(mapped) != sorted(state):
        raise CheckpointError(
            f"{source}: the dlib weights do not cover {name}'s encoder/decoder "
            f"(missing {sorted(set(mapped) - set(state))[:3]}, "
            f"unexpected {sorted(set(state) - set(mapped))[:3]})"
        )
    others = sorted(set(own) - set(mapped))  # e.g. FactorVAE's discriminator: not exported
    model.load_state_dict({**own, **state}, strict=True)
    model.eval()
    return others


def _config_fields(s: dict[str, Any], hparams: dict[str, Any], out: Path) -> dict[str, Any]:
    """:class:`~vaelens.train.TrainConfig` keyword arguments for the imported run."""
    cfg_fields: dict[str, Any] = {
        "model": s["model"],
        "dataset": s["dataset"],
        "seed": s["seed"],
        "model_params": hparams,
        "out": str(out),
        "steps": s["steps"] or 1,
    }
    if s["batch_size"]:
        cfg_fields["batch_size"] = s["batch_size"]
    if s["lr"]:
        cfg_fields["lr"] = s["lr"]
    if s["adam_betas"]:
        cfg_fields["adam_betas"] = s["adam_betas"]
    return cfg_fields


def _zoo_info(
    src: Path, files: ModelFiles, bindings: dict[str, Any], s: dict[str, Any], others: list[str]
) -> dict[str, Any]:
    """The ``zoo.json`` contents: provenance, gin bindings, mapping and the library's results."""
    return {
        "format": _FORMAT,
        "source": str(src.resolve()),
        "model_number": _model_number(src),
        "gin": gin_to_json(bindings),
        "mapped": {k: s[k] for k in ("model", "model_params", "dataset", "seed")},
        "training_steps": s["steps"],
        "not_from_checkpoint": others,
        "train_results": (
            _scalars(files.train_results, f"{files.source}: {TRAIN_RESULTS}")
            if files.train_results is not None
            else None
        ),
        "scores": _scores(files),
    }


def _write_run(
    tmp: Path,
    out: Path,
    model: Any,
    s: dict[str, Any],
    hparams: dict[str, Any],
    image_shape: list[int],
    config: dict[str, Any],
    info: dict[str, Any],
) -> None:
    """Write the checkpoint, ``config.json``, ``zoo.json`` and ``status.json`` into ``tmp``."""
    from vaelens.train.checkpoint import save_checkpoint
    from vaelens.train.logging import write_status

    steps = s["steps"]
    model_info = {
        "name": s["model"],
        "variant": getattr(model, "variant", None),
        "hparams": hparams,
        "image_shape": image_shape,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    ckpt = save_checkpoint(
        tmp / "checkpoints",
        steps or 0,
        model=model,
        optimizers={},
        meta={"config": config, "model": model_info, "zoo": {"source": info["source"]}},
    )
    atomic_write_json(tmp / "config.json", config)
    atomic_write_json(tmp / ZOO_INFO, info)
    final_ckpt = out / "checkpoints" / ckpt.name
    write_status(
        tmp,
        "completed",
        step=steps or 0,
        total_steps=steps,
        checkpoint=str(final_ckpt),
        imported_from=info["source"],
    )


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the assembled ``tmp`` to ``out``, replacing (then removing) an existing ``out``."""
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(trash / "run")
        tmp.rename(out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(out)


def read_zoo_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``zoo.json`` of an imported run; one-line :class:`CheckpointError` if absent or malformed."""
    path = Path(run_dir) / ZOO_INFO
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (expected a run of `vaelens zoo import`)")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key, kind in (("source", str), ("gin", dict), ("scores", dict), ("mapped", dict)):
        if not isinstance(data.get(key), kind):
            raise CheckpointError(f"{path}: field {key!r}: expected a {kind.__name__}")
    for key, scores in data["scores"].items():
        if not isinstance(scores, dict):
            raise CheckpointError(f"{path}: scores[{key!r}]: expected a JSON object")
    return data
