"""Registry look-ups, downloads (offline and with a wrong checksum) and file verification."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vaelens.data import DatasetSpec, RemoteFile, get_spec, load_dataset, register_dataset
from vaelens.data.download import cache_dir, download, find_file, verify
from vaelens.errors import DatasetError, DownloadError

PAYLOAD = b"vaelens test payload\n" * 100
MD5 = hashlib.md5(PAYLOAD, usedforsecurity=False).hexdigest()


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server serving tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "payload.bin").write_bytes(PAYLOAD)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _register(name: str, url: str, md5: str | None) -> None:
    register_dataset(
        DatasetSpec(
            name=name,
            description="test dataset",
            factor_names=("a",),
            factor_sizes=(2,),
            image_shape=(1, 2, 2),
            loader=lambda **kw: None,  # never called here
            files=(RemoteFile("payload.bin", urls=(url,), md5=md5),),
        )
    )


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError, match="unknown name 'nope'"):
        get_spec("nope")
    with pytest.raises(DatasetError, match="unknown name"):
        load_dataset("nope")


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAELENS_DATA_DIR", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "flag") == tmp_path / "flag"


def test_download_verifies_checksum(tmp_path: Path, http_server: str) -> None:
    _register("t_ok", f"{http_server}/payload.bin", MD5)
    (path,) = download("t_ok", root=tmp_path)
    assert path == tmp_path / "t_ok" / "payload.bin"
    assert path.read_bytes() == PAYLOAD
    assert verify("t_ok", root=tmp_path) == {"payload.bin": "ok"}
    assert find_file("t_ok", "payload.bin", tmp_path) == path
    # a corrupted file is detected by verify and replaced by download
    path.write_bytes(b"corrupt")
    assert verify("t_ok", root=tmp_path)["payload.bin"].startswith("checksum mismatch")
    download("t_ok", root=tmp_path)
    assert path.read_bytes() == PAYLOAD


def test_wrong_checksum_is_one_clear_error(tmp_path: Path, http_server: str) -> None:
    _register("t_bad", f"{http_server}/payload.bin", "0" * 32)
    with pytest.raises(DownloadError, match=r"payload\.bin: checksum mismatch"):
        download("t_bad", root=tmp_path)
    assert not (tmp_path / "t_bad" / "payload.bin").exists()


def test_offline_download_fails_with_one_line(tmp_path: Path) -> None:
    # port 9 (discard) on loopback refuses the connection, as an offline machine would
    _register("t_off", "http://127.0.0.1:9/payload.bin", MD5)
    with pytest.raises(DownloadError) as info:
        download("t_off", root=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert "payload.bin: could not download" in msg and "offline" in msg
    assert verify("t_off", root=tmp_path) == {"payload.bin": "missing"}


def test_load_dataset_checks_source() -> None:
    specs = {s.name for s in __import__("vaelens.data", fromlist=["x"]).list_datasets()}
    if "synthetic" not in specs:
        pytest.skip("synthetic dataset not registered")
    with pytest.raises(DatasetError, match="source: synthetic supports"):
        load_dataset("synthetic", source="file")
    ds = load_dataset("synthetic")
    assert ds.images(ds.sample_factors(2, np.random.default_rng(0))).shape == (2, *ds.image_shape)


def test_a_file_without_address_says_where_to_get_it(tmp_path: Path) -> None:
    register_dataset(
        DatasetSpec(
            name="t_manual",
            description="test",
            factor_names=("a",),
            factor_sizes=(2,),
            image_shape=(1, 2, 2),
            loader=lambda **kw: None,
            files=(RemoteFile("faces.zip", urls=(), manual="the authors' drive"),),
        )
    )
    with pytest.raises(DownloadError, match=r"faces\.zip: has no direct download address") as info:
        download("t_manual", root=tmp_path)
    assert "the authors' drive" in str(info.value) and str(tmp_path / "t_manual") in str(info.value)


def test_variant_selects_files(tmp_path: Path, http_server: str) -> None:
    register_dataset(
        DatasetSpec(
            name="t_var",
            description="test",
            factor_names=("a",),
            factor_sizes=(2,),
            image_shape=(1, 2, 2),
            loader=lambda **kw: None,
            files=(
                RemoteFile(
                    "payload.bin", urls=(f"{http_server}/payload.bin",), md5=MD5, variant="toy"
                ),
                RemoteFile("big.bin", urls=("http://127.0.0.1:9/big.bin",), variant="real"),
            ),
        )
    )
    assert [p.name for p in download("t_var", root=tmp_path, variant="toy")] == ["payload.bin"]
    assert verify("t_var", root=tmp_path, variant="toy") == {"payload.bin": "ok"}
    with pytest.raises(DatasetError, match=r"variant: t_var has variants \['real', 'toy'\]"):
        download("t_var", root=tmp_path, variant="huge")
