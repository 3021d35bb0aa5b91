"""Zoo zips and directories (read member by member, safely), dataset names, downloads."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from vaelens.errors import CheckpointError, ConfigError, DatasetError, DownloadError
from vaelens.zoo import archive, download
from vaelens.zoo.archive import read_model, validate_member_name
from vaelens.zoo.datasets import vaelens_dataset
from vaelens.zoo.tfckpt import CheckpointReader, write_checkpoint

GIN = "model.model = @vae()\nvae.beta = 4.0\ndataset.name = 'dsprites_full'\n"
SCORE = "metrics/mean/mig/results/json/evaluation_results.json"


def _members(tmp_path):
    write_checkpoint(tmp_path / "ck", {"encoder/e1/bias": np.arange(3, dtype=np.float32)})
    return {
        "model/tfhub/variables/variables.index": (tmp_path / "ck.index").read_bytes(),
        "model/tfhub/variables/variables.data-00000-of-00001": (
            tmp_path / "ck.data-00000-of-00001"
        ).read_bytes(),
        "model/tfhub/saved_model.pb": b"never read",
        "model/results/gin/train.gin": GIN.encode(),
        SCORE: json.dumps({"evaluation_results.discrete_mig": 0.25}).encode(),
        "visualizations/x.gif": b"GIF89a",
    }


def _zip(tmp_path, members, root="0/"):
    path = tmp_path / "0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(root + name, data)
    return path


def _check(files):
    assert files.gin == GIN
    assert list(files.scores) == ["mean/mig"]
    assert json.loads(files.scores["mean/mig"]) == {"evaluation_results.discrete_mig": 0.25}
    reader = CheckpointReader(files.index, files.shard, source=files.source)
    np.testing.assert_array_equal(reader.read("encoder/e1/bias"), [0, 1, 2])


@pytest.mark.parametrize("root", ["0/", ""])
def test_a_zip_is_read_member_by_member(tmp_path, root):
    files = read_model(_zip(tmp_path, _members(tmp_path), root))
    _check(files)
    assert files.num_shards == 1 and set(files.shards) == {0}


def test_a_directory_is_read_the_same_way(tmp_path):
    base = tmp_path / "out" / "7"
    for name, data in _members(tmp_path).items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(data)
    _check(read_model(tmp_path / "out"))


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a\\b", "C:/x", "a/\x00b", "a/../../b"])
def test_unsafe_member_names_are_refused(tmp_path, name):
    with pytest.raises(CheckpointError, match="unsafe member name"):
        validate_member_name(name, "z.zip")
    if "\x00" in name:
        return  # zipfile itself cuts a name at NUL
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(CheckpointError, match=r"evil\.zip: unsafe member name"):
        read_model(path)


def test_oversized_missing_and_broken_members_are_one_line_errors(tmp_path, monkeypatch):
    members = _members(tmp_path)
    monkeypatch.setattr(archive, "MAX_TEXT_BYTES", 16)
    with pytest.raises(CheckpointError, match=r"train\.gin is \d+ bytes \(expected at most 16"):
        read_model(_zip(tmp_path, members))
    monkeypatch.undo()
    del members["model/results/gin/train.gin"]
    with pytest.raises(CheckpointError, match=r"0\.zip: no model/results/gin/train\.gin"):
        read_model(_zip(tmp_path, members))
    del members["model/tfhub/variables/variables.index"]
    with pytest.raises(CheckpointError, match=r"no model/tfhub/variables/variables\.index"):
        read_model(_zip(tmp_path, members))
    half = tmp_path / "half.zip"
    half.write_bytes(_zip(tmp_path, _members(tmp_path)).read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"half\.zip: not a readable zip"):
        read_model(half)
    with pytest.raises(CheckpointError, match="no such file or directory"):
        read_model(tmp_path / "absent.zip")


def test_a_missing_shard_is_named(tmp_path):
    members = _members(tmp_path)
    del members["model/tfhub/variables/variables.data-00000-of-00001"]
    files = read_model(_zip(tmp_path, members))
    with pytest.raises(CheckpointError, match=r"missing model/tfhub/variables/variables\.data-"):
        CheckpointReader(files.index, files.shard, source=files.source).read("encoder/e1/bias")


def test_dataset_names():
    assert vaelens_dataset("dsprites_full") == "dsprites"
    assert vaelens_dataset("shapes3d") == "shapes3d"
    assert vaelens_dataset("smallnorb") == "smallnorb"
    for name in ("color_dsprites", "noisy_dsprites", "scream_dsprites", "cars3d"):
        with pytest.raises(DatasetError, match=rf"^train\.gin: .*'{name}' is not supported yet"):
            vaelens_dataset(name, "train.gin")
    with pytest.raises(DatasetError, match="unknown disentanglement_lib dataset 'mnist'"):
        vaelens_dataset("mnist")


def test_download_addresses_and_the_offline_message(tmp_path, monkeypatch):
    assert (
        download.model_url(0)
        == "https://storage.googleapis.com/disentanglement_lib/unsupervised_study_v1/0.zip"
    )
    assert download.model_url(10799).endswith("/unsupervised_study_v1/10799.zip")
    for bad in (-1, 10800, 1.0, True, "3"):
        with pytest.raises(ConfigError, match=r"model number: expected an integer in 0\.\.10799"):
            download.model_url(bad)
    assert download.model_path(5, tmp_path) == tmp_path / "zoo" / "unsupervised_study_v1/5.zip"

    import pooch

    def offline(*_a, **_k):
        raise ConnectionError("no network")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DownloadError, match=r"/3\.zip: could not download \(ConnectionError\); "):
        download.download_model(3, tmp_path)
    cached = download.model_path(4, tmp_path)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"zip")
    assert download.download_model(4, tmp_path) == cached  # no network needed
