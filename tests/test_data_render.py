"""Image grids and atomic PNG writing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vaelens.data import load_dataset
from vaelens.data.render import image_grid, save_png, to_uint8, write_sample_grids
from vaelens.errors import DatasetError


def test_grid_layout_places_each_image_in_its_cell(rng):
    images = rng.random((5, 1, 4, 6)).astype(np.float32)
    grid = image_grid(images, nrow=2, pad=1, pad_value=0.0)
    # 3 rows of 2 cells: height 3*(4+1)+1, width 2*(6+1)+1
    assert grid.shape == (16, 15, 3) and grid.dtype == np.uint8
    want = np.rint(images * 255).astype(np.uint8)
    for k in range(5):
        r, c = 1 + (k // 2) * 5, 1 + (k % 2) * 7
        for ch in range(3):  # gray repeated over RGB
            np.testing.assert_array_equal(grid[r : r + 4, c : c + 6, ch], want[k, 0])
    # separators and the empty last cell carry the pad value
    assert (grid[0] == 0).all() and (grid[:, 0] == 0).all() and (grid[5] == 0).all()
    assert (grid[11:15, 8:14] == 0).all()


def test_grid_rgb_clips_and_pads_with_white():
    images = np.zeros((2, 3, 2, 2), dtype=np.float64)
    images[0, 0] = 2.0  # clipped to 1
    images[1, 2] = -1.0  # clipped to 0
    images[1, 1] = 0.5
    grid = image_grid(images, nrow=4, pad=2)
    assert grid.shape == (2 + 4, 2 * 4 + 2, 3)  # ncol = min(nrow, N) = 2
    np.testing.assert_array_equal(grid[2:4, 2:4], np.broadcast_to([255, 0, 0], (2, 2, 3)))
    np.testing.assert_array_equal(grid[2:4, 6:8], np.broadcast_to([0, 128, 0], (2, 2, 3)))
    assert (grid[:2] == 255).all() and (grid[:, 4:6] == 255).all()
    assert image_grid(images, nrow=1, pad=0).shape == (4, 2, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": np.zeros((2, 2, 4, 4))}, "images: .*C = 1 or 3"),
        ({"images": np.zeros((0, 1, 4, 4))}, "images: expected a non-empty"),
        ({"images": np.full((1, 1, 2, 2), np.nan)}, "images: contains NaN"),
        ({"images": np.zeros((1, 1, 2, 2), dtype=np.int32)}, "images: expected uint8"),
        ({"nrow": 0}, "nrow"),
        ({"pad": -1}, "pad"),
        ({"pad_value": 2.0}, "pad_value"),
    ],
)
def test_grid_rejects_bad_input(kwargs, match):
    args = {"images": np.zeros((2, 1, 4, 4)), "nrow": 2, **kwargs}
    with pytest.raises(DatasetError, match=match):
        image_grid(**args)


def test_save_png_round_trips(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    path = save_png(rgb, tmp_path / "sub" / "grid.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), rgb)
    gray = rng.random((3, 4))
    with Image.open(save_png(gray[:, :, None], tmp_path / "gray.png")) as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), to_uint8(gray))
    with pytest.raises(DatasetError, match="array: expected"):
        save_png(np.zeros((2, 2, 2)), tmp_path / "grid.png")
    with pytest.raises(DatasetError, match="array: contains NaN"):
        save_png(np.full((2, 2), np.nan), tmp_path / "sub" / "grid.png")


def test_save_png_failure_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    old = np.zeros((3, 3), dtype=np.uint8)
    path = save_png(old, tmp_path / "grid.png")

    def broken_save(self, fh, format=None):  # writes half a file, then fails
        fh.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_png(np.full((3, 3), 255, dtype=np.uint8), path)
    monkeypatch.undo()
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), old)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_sample_grids_tell_progress_per_dataset_from_one_rng(tmp_path):
    heard: list[tuple[str, int, int]] = []
    targets = [("synthetic", tmp_path / "a.png"), ("dsprites", tmp_path / "sub" / "b.png")]
    grids = write_sample_grids(
        targets, n=6, nrow=3, seed=5, source="procedural", progress=lambda *a: heard.append(a)
    )
    assert heard == [("synthetic", 0, 2), ("dsprites", 1, 2), ("done", 2, 2)]
    assert [(g.name, g.path, g.source) for g in grids] == [
        ("synthetic", tmp_path / "a.png", "procedural"),
        ("dsprites", tmp_path / "sub" / "b.png", "procedural"),
    ]
    rng = np.random.default_rng(5)  # the datasets are sampled in turn from one generator
    for name, path in targets:
        ds = load_dataset(name, source="procedural")
        want = image_grid(ds.images(ds.sample_factors(6, rng)), nrow=3)
        with Image.open(path) as im:
            np.testing.assert_array_equal(np.asarray(im), want)


def test_sample_grids_check_every_target_before_the_first_stage(tmp_path):
    heard: list[tuple[str, int, int]] = []
    (tmp_path / "dir.png").mkdir()
    bad = [
        ([("synthetic", tmp_path / "ok.png"), ("nosuch", tmp_path / "x.png")], "nosuch"),
        ([("synthetic", tmp_path / "ok.png"), ("celeba", tmp_path / "x.png")], "source"),
        ([("synthetic", tmp_path / "ok.png"), ("dsprites", tmp_path / "dir.png")], "dir.png"),
    ]
    for targets, what in bad:
        with pytest.raises((DatasetError, OSError), match=what):
            write_sample_grids(
                targets, n=2, source="procedural", progress=lambda *a: heard.append(a)
            )
    assert heard == [] and not (tmp_path / "ok.png").exists()
