"""`import_model` / `vaelens zoo import`: a fake zoo model -> a run that gives the TF outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from test_zoo_dlib import _tf_graph, _weights
from vaelens.errors import CheckpointError, ConfigError
from vaelens.train import Run
from vaelens.zoo import GinRef, import_model, parse_gin, read_zoo_info
from vaelens.zoo.importer import zoo_settings
from vaelens.zoo.tfckpt import write_checkpoint

GIN = """\
import disentanglement_lib.methods.unsupervised.vae
# Parameters for model:
# ==============================================================================
model.batch_size = 64
model.model = @vae()
model.name = ''
model.random_seed = 3
model.training_steps = 300000

vae.beta = 4.0  # the beta-VAE
encoder.num_latent = 10
encoder.encoder_fn = @conv_encoder
decoder.decoder_fn = @deconv_decoder
reconstruction_loss.loss_fn = @bernoulli_loss
reconstruction_loss.activation = 'logits'
dataset.name = 'dsprites_full'
AdamOptimizer.learning_rate = 0.0001
AdamOptimizer.beta1 = 0.8
vae_optimizer.optimizer_fn = @AdamOptimizer
"""
SCORE = "metrics/mean/mig/results/json/evaluation_results.json"
VARS = "model/tfhub/variables/variables"


def _model_dir(tmp_path, gin=GIN, weights=None, name="7"):
    weights = _weights(10, 1, seed=5) if weights is None else weights
    base = tmp_path / "src" / name
    (base / "model/tfhub/variables").mkdir(parents=True)
    write_checkpoint(base / VARS, {**weights, "global_step": np.int64(300000)})
    (base / "model/tfhub/saved_model.pb").write_bytes(b"never read")
    for rel, text in {
        "model/results/gin/train.gin": gin,
        "model/results/json/train_results.json": json.dumps({"elbo": -31.5, "loss": 30.0}),
        SCORE: json.dumps({"evaluation_results.discrete_mig": 0.25, "elapsed_time": 2.0}),
    }.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    return base, weights


def _zip(base):
    path = base.parent / f"{base.name}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(base.rglob("*")):
            if f.is_file():
                zf.write(f, f"{base.name}/{f.relative_to(base).as_posix()}")
    return path


@pytest.mark.parametrize("as_zip", [False, True])
def test_an_imported_model_gives_the_tensorflow_graphs_outputs(tmp_path, as_zip):
    base, weights = _model_dir(tmp_path)
    src = _zip(base) if as_zip else base
    run_dir = import_model(src, tmp_path / "run")
    run = Run.open(run_dir)
    assert run.status == "completed" and run.config.model == "beta_vae"
    assert run.config.dataset == "dsprites" and run.config.seed == 3
    assert run.config.steps == 300000 and run.config.lr == 1e-4
    assert run.config.adam_betas == (0.8, 0.999)  # beta1 as bound, beta2 TensorFlow's default
    assert run.config.model_params["backbone"] == "dlib"
    model = run.model()
    assert model.beta == 4.0 and model.mode == "higgins" and model.likelihood == "bernoulli"
    x = np.random.default_rng(2).random((2, 64, 64, 1)).astype(np.float32)
    means, log_var, recon = _tf_graph({k: v.astype(np.float64) for k, v in weights.items()}, x)
    with torch.no_grad():
        mu, lv = model.encoder(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        rec = model.decoder(mu).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(mu.numpy(), means, atol=1e-5)
    np.testing.assert_allclose(lv.numpy(), log_var, atol=1e-5)
    np.testing.assert_allclose(rec, recon, atol=1e-5)
    info = read_zoo_info(run_dir)
    assert info["model_number"] == 7 and info["training_steps"] == 300000
    assert info["gin"]["model.model"] == "@vae()" and info["gin"]["vae.beta"] == 4.0
    assert info["scores"] == {"mean/mig": {"discrete_mig": 0.25, "elapsed_time": 2.0}}
    assert info["train_results"] == {"elbo": -31.5, "loss": 30.0}
    # an existing run directory is kept unless overwrite
    with pytest.raises(ConfigError, match=r"run: exists and is not empty; pass overwrite"):
        import_model(src, run_dir)
    assert import_model(src, run_dir, overwrite=True) == run_dir
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


def test_a_factor_vae_keeps_its_unexported_discriminator_at_its_seeded_init(tmp_path):
    gin = GIN.replace("@vae()", "@factor_vae()").replace("vae.beta = 4.0", "factor_vae.gamma = 10")
    run_dir = import_model(_model_dir(tmp_path, gin=gin)[0], tmp_path / "run")
    model = Run.open(run_dir).model()
    assert type(model).__name__ == "FactorVAE" and model.gamma == 10.0
    info = read_zoo_info(run_dir)
    assert info["not_from_checkpoint"][0].startswith("discriminator.")
    assert info["mapped"]["model_params"]["gamma"] == 10.0


def test_the_gin_reader_takes_literals_only():
    text = (
        "a.b = [1, -2.5e-3, 'x', (None, True), @f, @s/g()]\n"
        "c.d = \\\n    (1,\n     2)\n"
        'e.f = "it\'s # not a comment"  # a comment\n'
    )
    got = parse_gin(text, "t.gin")
    assert got == {
        "a.b": [1, -2.5e-3, "x", (None, True), GinRef("f"), GinRef("s/g", call=True)],
        "c.d": (1, 2),
        "e.f": "it's # not a comment",
    }
    for bad, line in (("a.b = 1\nc.d = %MACRO\n", 2), ("x = 1\n", 1), ("a.b = 1 + 2\n", 1)):
        with pytest.raises(ConfigError, match=rf"^t\.gin:{line}: ") as exc:
            parse_gin(bad, "t.gin")
        assert "\n" not in str(exc.value)


def test_the_methods_map_onto_the_registry():
    base = parse_gin(GIN.replace("model.model = @vae()\n", "").replace("vae.beta = 4.0", ""))
    cases = {
        "model.model = @beta_tc_vae()\nbeta_tc_vae.beta = 6": (
            "beta_tc_vae",
            {"alpha": 1.0, "beta": 6.0, "gamma": 1.0, "estimator": "mws"},
        ),
        "model.model = @factor_vae()\nfactor_vae.gamma = 30": ("factor_vae", {"gamma": 30.0}),
        "model.model = @dip_vae()\ndip_vae.dip_type = 'ii'\n"
        "dip_vae.lambda_od = 5.0\ndip_vae.lambda_d_factor = 2.0": (
            "dip_vae_ii",
            {"lambda_od": 5.0, "lambda_d": 10.0},
        ),
        "model.model = @annealed_vae()\nannealed_vae.c_max = 5\nannealed_vae.gamma = 1000\n"
        "annealed_vae.iteration_threshold = 1000": (
            "beta_vae",
            {"mode": "capacity", "gamma": 1000.0, "c_max": 5.0, "c_steps": 1000},
        ),
    }
    for text, (name, params) in cases.items():
        s = zoo_settings({**base, **parse_gin(text)}, "t.gin")
        assert s["model"] == name
        assert {k: s["model_params"][k] for k in params} == params
    with pytest.raises(ConfigError, match=r"^t\.gin: dip_vae\.lambda_od is not bound"):
        zoo_settings(
            {**base, **parse_gin("model.model = @dip_vae()\ndip_vae.dip_type = 'i'")}, "t.gin"
        )
    conv = {**base, **parse_gin("model.model = @vae()\nvae.beta = 1\n")}
    with pytest.raises(ConfigError, match=r"only the conv architecture is supported"):
        zoo_settings({**conv, "encoder.encoder_fn": GinRef("fc_encoder")}, "t.gin")
    with pytest.raises(ConfigError, match=r"l2_loss.*expected @bernoulli_loss"):
        zoo_settings({**conv, "reconstruction_loss.loss_fn": GinRef("l2_loss")}, "t.gin")


def _one_line_error(tmp_path, src, exc_type, pattern):
    with pytest.raises(exc_type) as exc:
        import_model(src, tmp_path / "out")
    msg = str(exc.value)
    assert "\n" not in msg and str(src) in msg, msg
    assert pattern in msg, msg
    assert not (tmp_path / "out").exists()


def test_bad_models_are_one_line_naming_the_file(tmp_path):
    base, _ = _model_dir(tmp_path, gin=GIN.replace("@vae()", "@my_vae()"), name="1")
    _one_line_error(tmp_path, base, ConfigError, "model.model = '@my_vae()' is not supported")
    base, _ = _model_dir(tmp_path, gin=GIN + "vae.beta_schedule = exp(2)\n", name="2")
    _one_line_error(tmp_path, base, ConfigError, "train.gin:20: vae.beta_schedule")
    weights = _weights(10, 1)
    del weights["encoder/log_var/bias"]
    base, _ = _model_dir(tmp_path, weights=weights, name="3")
    _one_line_error(tmp_path, base, CheckpointError, "missing variable 'encoder/log_var/bias'")
    base, _ = _model_dir(tmp_path, name="4")
    shard = base / f"{VARS}.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:5000])
    _one_line_error(tmp_path, base, CheckpointError, f"{VARS}.data-00000-of-00001: tensor")
    zipped = _zip(_model_dir(tmp_path, name="5")[0])
    zipped.write_bytes(zipped.read_bytes()[:-3000])
    _one_line_error(tmp_path, zipped, CheckpointError, "truncated?")


def test_read_zoo_info_refuses_a_malformed_file(tmp_path):
    (tmp_path / "zoo.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"zoo\.json: not valid JSON"):
        read_zoo_info(tmp_path)
    (tmp_path / "zoo.json").write_text(json.dumps({"source": "x", "gin": {}, "scores": []}))
    with pytest.raises(CheckpointError, match=r"zoo\.json: field 'scores': expected a dict"):
        read_zoo_info(tmp_path)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from vaelens.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_zoo_import_then_analyze_and_metrics(tmp_path):
    base, _ = _model_dir(tmp_path)
    run = tmp_path / "run"
    res = _cli("zoo", "import", str(_zip(base)), "--out", str(run))
    assert res.returncode == 0, res.stderr
    assert "beta_vae (beta=4.0" in res.stdout and "dsprites" in res.stdout
    res = _cli("zoo", "import", str(base), "--out", str(run))
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    args = ["--n-samples", "6", "-s", "n_boot=20", "-s", "n_probe=40", "-s", "n_show=1"]
    res = _cli("analyze", str(run), *args, "--no-baseline")
    assert res.returncode == 0, res.stderr
    assert (run / "analysis.json").is_file()
    res = _cli("metrics", str(run), "--metrics", "mig")
    assert res.returncode == 0, res.stderr
    assert 0 <= json.loads((run / "disentanglement.json").read_text())["mig"]["mig"] <= 1
    res = _cli("zoo", "url", "12")
    assert res.stdout.strip().endswith("/unsupervised_study_v1/12.zip")
