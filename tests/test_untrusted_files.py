"""Files from elsewhere are untrusted: names that escape a folder, sizes a header inflates.

Each case crafts a small file in the official format that the loaders once followed out of
their folder or read without a bound, and checks the one-line error that now refuses it.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from vaelens.data import celeba, mpi3d, smallnorb
from vaelens.data import dsprites as dsp
from vaelens.data.base import index_to_factors
from vaelens.data.shapes3d import open_shapes3d_h5, shapes3d_factor_values
from vaelens.errors import CheckpointError, ConfigError, DatasetError
from vaelens.study.config import study_config_from_dict
from vaelens.train.checkpoint import load_checkpoint, save_checkpoint

# --------------------------------------------------------------------------- CelebA

NAMES = ["000001.jpg", "000002.jpg"]


def _attr_text(names: list[str]) -> str:
    rows = [f"{n}" + " -1" * 40 for n in names]
    return "\n".join([str(len(names)), " ".join(celeba.CELEBA_ATTRIBUTES), *rows]) + "\n"


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "img_align_celeba").mkdir(parents=True)
    for i, name in enumerate(NAMES):
        (root / "img_align_celeba" / name).write_bytes(_jpeg(i))
    (root / "list_attr_celeba.txt").write_text(_attr_text(NAMES))
    return root


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../../secret.jpg", "has a path separator"),
        ("/etc/passwd", "has a path separator"),
        ("..", "has '..'"),
        ("a\\b.jpg", "has a path separator"),
        ("x\0.jpg", "has a NUL character"),
    ],
)
def test_attr_file_with_a_traversal_name_is_refused_at_its_line(celeba_root, name, problem):
    secret = celeba_root.parent / "secret.jpg"  # what `../../secret.jpg` would reach
    secret.write_bytes(_jpeg(7))
    (celeba_root / "list_attr_celeba.txt").write_text(_attr_text([NAMES[0], name]))
    with pytest.raises(
        DatasetError, match=rf"list_attr_celeba\.txt, line 4: image name .* {problem}"
    ):
        celeba.load_celeba(root=celeba_root)
    assert not list(celeba_root.glob("*.npy"))  # nothing cached


def test_partition_file_with_a_traversal_name_is_refused(celeba_root):
    part = celeba_root / "list_eval_partition.txt"
    part.write_text("000001.jpg 0\n../000002.jpg 1\n")
    with pytest.raises(
        DatasetError,
        match=r"list_eval_partition\.txt, line 2: image name '\.\./000002\.jpg' has a path",
    ):
        celeba.read_partition_file(part)


def test_oversized_text_file_is_refused_before_reading(celeba_root, monkeypatch):
    monkeypatch.setattr(celeba, "MAX_TEXT_BYTES", 300, raising=False)
    with pytest.raises(
        DatasetError, match=r"list_attr_celeba\.txt: \d+ bytes, over the 300-byte limit"
    ):
        celeba.load_celeba(root=celeba_root)


def _zip_root(celeba_root: Path, members: dict[str, bytes]) -> None:
    shutil.rmtree(celeba_root / "img_align_celeba")
    with zipfile.ZipFile(celeba_root / "img_align_celeba.zip", "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)


def test_zip_member_that_escapes_is_refused(celeba_root):
    _zip_root(
        celeba_root,
        {"img_align_celeba/000001.jpg": _jpeg(0), "img_align_celeba/../../000002.jpg": _jpeg(1)},
    )
    with pytest.raises(
        DatasetError,
        match=r"img_align_celeba\.zip: member 'img_align_celeba/\.\./\.\./000002\.jpg' escapes",
    ):
        celeba.load_celeba(root=celeba_root)
    assert not list(celeba_root.glob("*.npy")) and not list(celeba_root.glob(".*.tmp"))


def test_zip_members_outside_the_image_folder_are_not_read(celeba_root):
    # both images exist in the zip, but one only under another folder: it is not used
    _zip_root(
        celeba_root, {"img_align_celeba/000001.jpg": _jpeg(0), "elsewhere/000002.jpg": _jpeg(1)}
    )
    with pytest.raises(
        DatasetError, match=r"img_align_celeba\.zip:000002\.jpg: image listed .* missing from"
    ):
        celeba.load_celeba(root=celeba_root)


# --------------------------------------------------------------------------- SmallNORB


def _norb_header(shape: tuple[int, ...], magic: int = 0x1E3D4C55) -> bytes:
    dims = [*shape, *([1] * max(0, 3 - len(shape)))]
    return struct.pack(f"<{2 + len(dims)}i", magic, len(shape), *dims)


def _gzip_of(header: bytes, zeros: int) -> bytes:
    """A gzip stream of ``header`` then ``zeros`` zero bytes, compressed piecewise."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [comp.compress(header)]
    block = bytes(1 << 20)
    for start in range(0, zeros, len(block)):
        out.append(comp.compress(block[: min(len(block), zeros - start)]))
    out.append(comp.flush())
    return b"".join(out)


def test_gzip_bomb_declared_over_the_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(smallnorb, "MAX_MAT_BYTES", 1 << 20, raising=False)
    path = tmp_path / "bomb-dat.mat.gz"
    path.write_bytes(_gzip_of(_norb_header((4, 2, 512, 512)), 4 * 2 * 512 * 512))  # 2 MiB
    assert path.stat().st_size < 20_000
    with pytest.raises(
        DatasetError,
        match=r"bomb-dat\.mat\.gz: header declares a uint8 matrix of shape \(4, 2, 512, 512\) "
        r"\(2097176 bytes\), over the 1048576-byte limit",
    ):
        smallnorb.read_norb_mat(path)


def test_header_with_an_overflowing_shape_is_refused(tmp_path):
    # 2^30 cubed overflows int64; the exact product is far over the cap
    path = tmp_path / "huge.mat"
    path.write_bytes(_norb_header((1 << 30, 1 << 30, 1 << 30)) + b"\0" * 16)
    with pytest.raises(DatasetError, match=r"huge\.mat: header declares .* over the \d+-byte"):
        smallnorb.read_norb_mat(path)


def test_gzip_inflating_past_its_header_stops_at_the_declared_size(tmp_path):
    path = tmp_path / "long-cat.mat.gz"
    path.write_bytes(_gzip_of(_norb_header((4,), 0x1E3D4C54), 8 << 20))  # header: 16 bytes
    tracemalloc.start()
    try:
        with pytest.raises(
            DatasetError,
            match=r"long-cat\.mat\.gz: has trailing bytes: decompresses to more than the 36",
        ):
            smallnorb.read_norb_mat(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20  # the 8 MiB of zeros were never held


# --------------------------------------------------------------------------- MPI3D


def _npz_with_header(path: Path, shape: tuple[int, ...], payload: bytes = b"") -> None:
    buf = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images.npy", buf.getvalue() + payload)


def test_mpi3d_header_with_huge_images_is_refused_before_converting(tmp_path):
    _npz_with_header(tmp_path / "mpi3d_toy.npz", (2, 4096, 4096, 3), bytes(1 << 16))
    with pytest.raises(
        DatasetError, match=r"mpi3d_toy\.npz: 'images' are 4096x4096, expected sides in \[1, 64\]"
    ):
        mpi3d.load_mpi3d(root=tmp_path, factor_sizes=(1, 1, 1, 1, 1, 1, 2))
    assert not (tmp_path / "mpi3d_toy.images.npy").exists()


def test_mpi3d_member_longer_than_its_header_is_refused(tmp_path):
    _npz_with_header(tmp_path / "mpi3d_toy.npz", (2, 4, 4, 3), bytes(96 + 1000))
    with pytest.raises(DatasetError, match=r"images\.npy holds more data than the 96 bytes"):
        mpi3d.load_mpi3d(root=tmp_path, factor_sizes=(1, 1, 1, 1, 1, 1, 2))
    assert not (tmp_path / "mpi3d_toy.images.npy").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_mpi3d_conversion_cap_on_declared_bytes(tmp_path):
    _npz_with_header(tmp_path / "a.npz", (2, 4, 4, 3), bytes(96))
    with pytest.raises(DatasetError, match=r"a\.npz: member images\.npy declares .* over the 50"):
        mpi3d.convert_npz_member_to_npy(
            tmp_path / "a.npz", "images", tmp_path / "a.npy", max_bytes=50
        )


# --------------------------------------------------------------------------- dSprites

SMALL = (3, 2, 2, 2, 2)
N_SMALL = int(np.prod(SMALL))


def _dsprites_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    imgs = np.zeros((N_SMALL, 64, 64), np.uint8)
    classes = np.zeros((N_SMALL, 6), np.int64)
    classes[:, 1:] = index_to_factors(np.arange(N_SMALL), SMALL)
    return imgs, classes, classes.astype(np.float64)


def test_dsprites_npz_header_declaring_a_huge_array_is_refused_unread(tmp_path):
    _, classes, values = _dsprites_arrays()
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|u1", "fortran_order": False, "shape": (1 << 40, 64, 64)}
    )
    path = tmp_path / "d.npz"
    np.savez(path, latents_classes=classes, latents_values=values)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("imgs.npy", buf.getvalue() + bytes(64))
    with pytest.raises(DatasetError, match=r"d\.npz: 'imgs' is uint8 \(1099511627776, 64, 64\)"):
        dsp.read_dsprites_file(path, factor_sizes=SMALL)


def test_dsprites_hdf5_with_external_storage_is_refused(tmp_path):
    imgs, classes, values = _dsprites_arrays()
    outside = tmp_path / "outside.bin"
    outside.write_bytes(imgs.tobytes())
    path = tmp_path / "d.hdf5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset(
            "imgs", shape=imgs.shape, dtype="u1", external=[(str(outside), 0, imgs.nbytes)]
        )
        fh["latents_classes"] = classes
        fh["latents_values"] = values
    with pytest.raises(DatasetError, match=r"d\.hdf5: dataset 'imgs' keeps its data in other"):
        dsp.read_dsprites_file(path, factor_sizes=SMALL)


# --------------------------------------------------------------------------- 3DShapes


def test_shapes3d_external_link_is_refused(tmp_path):
    sizes = (1, 1, 1, 1, 1, 2)
    factors = index_to_factors(np.arange(2), sizes)
    values = shapes3d_factor_values(sizes)
    labels = np.stack([values[f][factors[:, f]] for f in range(6)], axis=1)
    with h5py.File(tmp_path / "other.h5", "w") as fh:
        fh["images"] = np.zeros((2, 64, 64, 3), np.uint8)
    path = tmp_path / "3dshapes.h5"
    with h5py.File(path, "w") as fh:
        fh["images"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/images")
        fh["labels"] = labels
    with pytest.raises(
        DatasetError, match=r"3dshapes\.h5: dataset 'images' keeps its data in other files"
    ):
        open_shapes3d_h5(path, factor_sizes=sizes)


# --------------------------------------------------------------------------- checkpoints


def _checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "ckpt", 1, model=torch.nn.Linear(2, 2), optimizers={})


@pytest.mark.parametrize(
    "name", ["../x.safetensors", "/tmp/x.safetensors", "sub/x.safetensors", "x.json", 3]
)
def test_sidecar_naming_a_file_outside_its_directory_is_refused(tmp_path, name):
    json_path = _checkpoint(tmp_path)
    blob = json_path.with_suffix(".safetensors").read_bytes()
    (tmp_path / "x.safetensors").write_bytes(blob)  # a valid file where `../` points
    meta = json.loads(json_path.read_text())
    meta["tensors_file"] = name
    json_path.write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError,
        match=r"step_000000001\.json: field 'tensors_file' is .*, expected a plain file name",
    ):
        load_checkpoint(json_path)


def test_tensors_file_size_is_checked_before_reading(tmp_path, monkeypatch):
    json_path = _checkpoint(tmp_path)
    tensors = json_path.with_suffix(".safetensors")
    with tensors.open("ab") as fh:
        fh.write(bytes(1 << 20))
    read = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or b"")
    with pytest.raises(CheckpointError, match=r"truncated or altered: \d+ bytes, the sidecar"):
        load_checkpoint(json_path)
    assert tensors not in read


# --------------------------------------------------------------------------- study config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("architectures", "../../etc"),
        ("architectures", "a/b"),
        ("architectures", "beta vae"),
        ("architectures", ""),
        ("datasets", ".."),
        ("datasets", "..\\x"),
    ],
)
def test_study_names_with_path_parts_are_refused(field, value):
    legal = {
        "name": "s",
        "architectures": ["beta_vae", "dip_vae_ii", "pkg.mod:Class", "mypkg.models:Outer.VAE"],
        "datasets": ["synthetic", "mpi3d_real_complex"],
    }
    assert study_config_from_dict(legal).architectures[2] == "pkg.mod:Class"  # still legal
    with pytest.raises(ConfigError, match=rf"field '{field}': entry .* is not a plain name"):
        study_config_from_dict({**legal, field: [*legal[field], value]})
