"""CelebA loader: tiny attribute/partition files and JPEGs in the official layout."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from vaelens.data import get_spec, intervention_pairs, load_dataset
from vaelens.data.celeba import CELEBA_ATTRIBUTES, load_celeba, read_attr_file
from vaelens.data.download import download
from vaelens.errors import DatasetError, DownloadError

A = {name: i for i, name in enumerate(CELEBA_ATTRIBUTES)}
M, S, B, E, Y = A["Male"], A["Smiling"], A["Bald"], A["Eyeglasses"], A["Young"]
# attributes set to +1 in each image (all others -1)
ON = [set(), {M}, {M, S}, {S}, {M, B, E}, {Y}, {Y}, {M, Y}]
PARTITION = [0, 0, 0, 1, 1, 2, 2, 2]
NAMES = [f"{i + 1:06d}.jpg" for i in range(len(ON))]


def _attr_rows() -> np.ndarray:
    out = np.full((len(ON), 40), -1, np.int8)
    for r, on in enumerate(ON):
        out[r, list(on)] = 1
    return out


def _write_attr(path, rows=None, names=CELEBA_ATTRIBUTES, count=None, files=NAMES):
    rows = _attr_rows() if rows is None else rows
    lines = [str(len(rows) if count is None else count), " ".join(names) + " "]
    for f, row in zip(files, rows, strict=True):
        # the official file pads with two spaces before a positive value
        lines.append(f + "".join(f"  {v}" if v == 1 else f" {v}" for v in row))
    path.write_text("\n".join(lines) + "\n")


def _face(i: int) -> Image.Image:
    rng = np.random.default_rng(i)
    base = np.zeros((218, 178, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, 178, dtype=np.uint8)[None, :]
    base[..., 1] = np.linspace(0, 255, 218, dtype=np.uint8)[:, None]
    base[..., 2] = 30 * i
    base[35:183, 15:163] += rng.integers(0, 30, size=(148, 148, 3), dtype=np.uint8)
    return Image.fromarray(base)


@pytest.fixture
def celeba_root(tmp_path):
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    for i, name in enumerate(NAMES):
        _face(i).save(folder / name, quality=90)
    _write_attr(tmp_path / "list_attr_celeba.txt")
    (tmp_path / "list_eval_partition.txt").write_text(
        "".join(f"{f} {p}\n" for f, p in zip(NAMES, PARTITION, strict=True))
    )
    return tmp_path


def _expected(path) -> np.ndarray:
    """Centre crop 148 of a 178x218 image is the box (15, 35, 163, 183); then bilinear 64."""
    with Image.open(path) as img:
        crop = img.convert("RGB").crop((15, 35, 163, 183))
        return np.asarray(crop.resize((64, 64), Image.Resampling.BILINEAR))


def test_reads_attributes_images_and_partition(celeba_root):
    ds = load_celeba(root=celeba_root)
    assert len(ds) == 8 and ds.image_shape == (3, 64, 64)
    assert ds.factor_names == CELEBA_ATTRIBUTES and ds.factor_sizes == (2,) * 40
    np.testing.assert_array_equal(ds.attributes, (_attr_rows() > 0).astype(int))
    assert ds.filenames == NAMES
    np.testing.assert_array_equal(ds.partition, PARTITION)
    expected = np.stack([_expected(celeba_root / "img_align_celeba" / f) for f in NAMES])
    np.testing.assert_array_equal(ds.array, expected)
    # images(factors) returns the real image with exactly those attributes
    out = ds.images(ds.attributes[[2, 4]])
    assert out.dtype == np.float32 and out.shape == (2, 3, 64, 64)
    np.testing.assert_array_equal(out, expected[[2, 4]].transpose(0, 3, 1, 2) / np.float32(255))
    # two images share {Young}: "first" takes the first in file order
    np.testing.assert_array_equal(ds.index_of(ds.attributes[[6]]), [5])
    rnd = load_celeba(root=celeba_root, match_rule="random", seed=1)
    assert {int(rnd.index_of(ds.attributes[[6]])[0]) for _ in range(30)} == {5, 6}
    none = np.zeros((1, 40), int)
    none[0, A["Wearing_Hat"]] = 1
    with pytest.raises(
        DatasetError, match=r"row 0 \(attributes set: \['Wearing_Hat'\]\) matches no CelebA image"
    ):
        ds.images(none)
    drawn = ds.sample_factors(40, np.random.default_rng(0))
    assert {tuple(r) for r in drawn} <= {tuple(r) for r in ds.attributes}


def test_cache_split_zip_and_registry(celeba_root):
    ds = load_dataset("celeba", root=celeba_root)
    npy = celeba_root / "celeba_crop148_64.npy"
    stamp = npy.stat().st_mtime_ns
    full = np.array(ds.array)
    # the zip holds the same JPEGs under img_align_celeba/
    folder = celeba_root / "img_align_celeba"
    with zipfile.ZipFile(celeba_root / "img_align_celeba.zip", "w") as zf:
        for f in NAMES:
            zf.write(folder / f, f"img_align_celeba/{f}")
    for f in NAMES:
        (folder / f).unlink()
    folder.rmdir()
    test = load_celeba(root=celeba_root, split="test")  # from the cache: no images needed
    assert isinstance(test.array, np.memmap) and npy.stat().st_mtime_ns == stamp
    assert test.filenames == NAMES[5:] and len(test) == 3
    np.testing.assert_array_equal(test.uint8_at([0, 2]), full[[5, 7]].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(test.attributes, ds.attributes[5:])
    npy.unlink()
    from_zip = load_celeba(root=celeba_root)
    np.testing.assert_array_equal(from_zip.array, full)
    spec = get_spec("celeba")
    assert not spec.factorial and spec.interventions == ds.interventions
    assert {f.name: f.md5 for f in spec.files}[
        "list_attr_celeba.txt"
    ] == "75e246fa4810816ffd6ee81facbd244c"
    with pytest.raises(DownloadError, match="by hand"):
        download("celeba", root=celeba_root / "dl")


def _min_other_distance(attrs: np.ndarray, i: int, k: int) -> int:
    other = [f for f in range(40) if f != k]
    return min(
        int((attrs[j, other] != attrs[i, other]).sum())
        for j in range(len(attrs))
        if attrs[j, k] != attrs[i, k]
    )


def test_matched_pairs_are_nearest_in_hamming_distance(celeba_root):
    ds = load_celeba(root=celeba_root)
    rng = np.random.default_rng(0)
    for k in (M, S, B, Y):
        base, changed = ds.intervention_pair_indices(k, 200, rng)
        assert (ds.attributes[base, k] != ds.attributes[changed, k]).all()
        d = ds.other_differences(ds.attributes[base], ds.attributes[changed], k)
        np.testing.assert_array_equal(d, [_min_other_distance(ds.attributes, i, k) for i in base])
        if k == B:  # e.g. {S} -> {M,B,E}: found by the exhaustive search, not the 0-2 probes
            assert d.max() == 3
    base, changed = ds.intervention_pair_indices(M, 300, np.random.default_rng(1))
    pairs = set(zip(base.tolist(), changed.tolist(), strict=True))
    # {} <-> {M}, {M,S} <-> {S}, {M,B,E} -> {} (2 others differ), {M,Y} -> either {Y} image
    assert {(0, 1), (1, 0), (2, 3), (3, 2), (4, 0), (5, 7), (6, 7), (7, 5), (7, 6)} == pairs
    # mean of others differing: only base 4 (probability 1/8) costs 2 attributes
    mean = ds.mean_other_differences("Male", n=4000, seed=0)
    assert mean == pytest.approx(2 / 8, abs=0.05)
    # Smiling: {M,B,E} -> {M,S} costs 2, {Y} / {Y} / {M,Y} cost 1 each: (2 + 3) / 8
    assert ds.mean_other_differences("Smiling", n=4000) == pytest.approx(5 / 8, abs=0.05)
    # the generic helper of vaelens.data uses the dataset's own matched pairs
    fb, fc = intervention_pairs(ds, "Bald", 50, np.random.default_rng(2))
    assert (fb[:, B] != fc[:, B]).all() and fb.shape == (50, 40)
    with pytest.raises(DatasetError, match="Wearing_Hat has one value"):
        ds.intervention_pairs("Wearing_Hat", 5, rng)


def test_bad_text_files_name_file_and_line(celeba_root):
    attr = celeba_root / "list_attr_celeba.txt"
    rows = _attr_rows()
    _write_attr(attr, count=9)
    with pytest.raises(
        DatasetError, match=r"list_attr_celeba\.txt: line 1 gives 9 images, but the file has 8"
    ):
        read_attr_file(attr)
    _write_attr(attr, names=CELEBA_ATTRIBUTES[:39])
    with pytest.raises(
        DatasetError, match=r"list_attr_celeba\.txt, line 2: expected 40 attribute names, got 39"
    ):
        read_attr_file(attr)
    bad = rows.copy()
    bad[3, M] = 0
    _write_attr(attr, rows=bad)
    with pytest.raises(DatasetError, match=r"list_attr_celeba\.txt, line 6: attribute Male is '0'"):
        load_celeba(root=celeba_root)
    _write_attr(attr)
    attr.write_text(attr.read_text().replace("000005.jpg", "000005.jpg 1", 1))
    with pytest.raises(
        DatasetError, match=r"list_attr_celeba\.txt, line 7: expected 41 columns .* got 42"
    ):
        load_celeba(root=celeba_root)
    _write_attr(attr)
    attr.write_text(attr.read_text().replace("000002.jpg -1", "000002.jpg", 1))
    with pytest.raises(DatasetError, match=r"celeba\.txt, line 4: expected 41 columns .* got 40"):
        load_celeba(root=celeba_root)
    attr.unlink()
    with pytest.raises(
        DatasetError, match=r"list_attr_celeba\.txt not found.*Google Drive.*by hand"
    ):
        load_celeba(root=celeba_root)
    _write_attr(attr)
    part = celeba_root / "list_eval_partition.txt"
    part.write_text("000001.jpg 0\n000002.jpg 3\n")
    with pytest.raises(DatasetError, match=r"list_eval_partition\.txt, line 2: expected"):
        load_celeba(root=celeba_root)
    part.unlink()
    with pytest.raises(DatasetError, match=r"split='train' needs list_eval_partition\.txt"):
        load_celeba(root=celeba_root, split="train")


def test_missing_and_corrupt_images_name_the_file(celeba_root):
    folder = celeba_root / "img_align_celeba"
    data = (folder / "000003.jpg").read_bytes()
    (folder / "000003.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match=r"000003\.jpg: corrupt or unreadable image"):
        load_celeba(root=celeba_root)
    assert not list(celeba_root.glob("*.npy")) and not list(celeba_root.glob(".*.tmp"))
    (folder / "000003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"000003\.jpg: corrupt or unreadable image"):
        load_celeba(root=celeba_root)
    os.unlink(folder / "000003.jpg")
    with pytest.raises(
        DatasetError,
        match=r"img_align_celeba/000003\.jpg: image listed in list_attr_celeba\.txt is missing",
    ):
        load_celeba(root=celeba_root)


def test_interchange_on_matched_pairs_is_marked_approximate(celeba_root):
    import torch

    from vaelens.analysis import interchange_matrix
    from vaelens.lens import Lens
    from vaelens.models import build_model

    class FewAttributes:
        """The tiny CelebA restricted to attributes with both values among its 8 images."""

        def __init__(self, ds, keep):
            self.ds, self.keep = ds, keep
            self.name, self.image_shape = "celeba-few", ds.image_shape
            self.factor_names = tuple(ds.factor_names[k] for k in keep)
            self.factor_sizes = (2,) * len(keep)
            self.factor_values = [np.array([-1.0, 1.0])] * len(keep)

        def _full(self, factors):
            rows = np.zeros((len(factors), 40), np.int64)
            rows[:, self.keep] = factors
            return rows

        def images(self, factors):
            return self.ds.images(self._full(np.asarray(factors)))

        def sample_factors(self, n, rng):
            return self.ds.sample_factors(n, rng)[:, self.keep]

        def intervention_pairs(self, factor, n, rng):
            base, changed = self.ds.intervention_pairs(self.keep[factor], n, rng)
            return base[:, self.keep], changed[:, self.keep]

    ds = FewAttributes(load_celeba(root=celeba_root), [M, S, Y])
    torch.manual_seed(0)
    model = build_model("vae", width=0.125, in_channels=3, latent_dim=3)
    inter = interchange_matrix(Lens(model), ds, n_pairs=6, n_boot=20)
    assert inter.pairs == "matched" and len(inter.other_differences) == 3
    assert all(g is not None and 0 <= g <= 2 for g in inter.other_differences)
    assert inter.share.shape == (3, 3)
