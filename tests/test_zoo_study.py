"""`vaelens zoo study`: a folder of zoo models -> a study database that `vaelens report` reads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from test_zoo_import import GIN, _model_dir, _zip
from vaelens.errors import ConfigError
from vaelens.study.store import ResultStore
from vaelens.study.zoo import dlib_scores, find_zoo_models

SETTINGS = ["n_samples=6", "n_boot=20", "n_probe=40", "n_show=1", "baseline=false"]


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-c", "from vaelens.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_folder_of_zoo_models_becomes_a_reported_study(tmp_path):
    _model_dir(tmp_path, name="3")
    _zip(_model_dir(tmp_path, gin=GIN.replace("random_seed = 3", "random_seed = 1"), name="8")[0])
    bad = tmp_path / "src" / "8"  # the zip's source directory: a bad gin now, so it fails
    (bad / "model/results/gin/train.gin").write_text(GIN.replace("@vae()", "@my_vae()"))
    bad.rename(tmp_path / "src" / "9")
    assert list(find_zoo_models(tmp_path / "src")) == ["3", "8", "9"]
    study = tmp_path / "study"
    sets = [a for s in SETTINGS for a in ("-s", s)]
    res = _cli(
        "zoo", "study", str(tmp_path / "src"), "--out", str(study), *sets, "-s", "metrics=[mig]"
    )
    assert res.returncode == 0, res.stderr
    assert "failed ConfigError" in res.stdout and "'@my_vae()' is not supported" in res.stdout
    with ResultStore(study / "study.sqlite") as store:
        assert store.counts() == {"pending": 0, "running": 0, "completed": 2, "failed": 1}
        results = store.results().set_index("run_id")
    ok = results.loc["zoo-3"]
    assert ok.architecture == "beta_vae" and ok.dataset == "dsprites" and ok.seed == 3
    assert ok["dlib.mig.discrete_mig"] == 0.25 and 0 <= ok["mig.mig"] <= 1
    assert results.loc["zoo-8"].seed == 1
    assert (study / "runs" / "zoo-8" / "zoo.json").is_file()
    res = _cli("report", str(study))
    assert res.returncode == 0, res.stderr
    html = (study / "report" / "report.html").read_text()
    assert "Pretrained zoo: our scores beside disentanglement_lib" in html
    zoo = (study / "report" / "tables" / "table_zoo.csv").read_text()
    assert "dlib.mig.discrete_mig" in zoo and "mig.mig" in zoo
    # resuming redoes nothing; another analysis setting is refused
    res = _cli(
        "zoo", "study", str(tmp_path / "src"), "--out", str(study), *sets, "-s", "metrics=[mig]"
    )
    assert res.returncode == 0 and "done" not in res.stdout, res.stdout
    res = _cli("zoo", "study", str(tmp_path / "src"), "--out", str(study), "-s", "n_boot=30")
    assert res.returncode == 2 and "other analysis settings" in res.stderr


def test_dlib_scores_and_an_empty_folder(tmp_path):
    info = {
        "scores": {
            "mean/mig": {"discrete_mig": 0.25, "elapsed_time": 3.0, "note": "x"},
            "sampled/sap_score": {"SAP_score": 0.1},
        }
    }
    assert dlib_scores(info) == {
        "dlib": {"mig": {"discrete_mig": 0.25}, "sampled.sap_score": {"SAP_score": 0.1}}
    }
    with pytest.raises(ConfigError, match="no zoo models"):
        find_zoo_models(tmp_path)
    (tmp_path / "a.zip").write_bytes(b"")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model/tfhub/variables").mkdir(parents=True)
    (tmp_path / "a" / "model/tfhub/variables/variables.index").write_bytes(b"")
    with pytest.raises(ConfigError, match="two models named 'a'"):
        find_zoo_models(tmp_path)
