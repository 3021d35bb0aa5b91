"""Checkpoint files: exact round trip, atomic writes, validation errors naming the file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

import vaelens.io
from test_train_fixtures import TinyVAE
from vaelens.errors import CheckpointError
from vaelens.train.checkpoint import (
    checkpoint_paths,
    clean_partial,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    restore_model,
    restore_optimizer,
    restore_rng_state,
    save_checkpoint,
)


def _trained(seed: int = 0) -> tuple[TinyVAE, dict[str, torch.optim.Optimizer]]:
    torch.manual_seed(seed)
    model = TinyVAE(aux=True)
    opts = {
        "main": torch.optim.Adam(model.main_parameters(), lr=1e-3, weight_decay=1e-5),
        "aux": torch.optim.Adam(model.disc.parameters(), lr=1e-4, betas=(0.5, 0.9)),
    }
    x = (torch.rand(6, 1, 16, 16) > 0.5).float()
    for step in range(3):
        out = model.training_losses(x, step=step)
        for o in opts.values():
            o.zero_grad()
        out["loss"].backward()
        out["aux_loss"].backward()
        for o in opts.values():
            o.step()
    return model, opts


def test_round_trip_is_exact_for_weights_optimisers_and_rngs(tmp_path: Path) -> None:
    model, opts = _trained()
    torch.manual_seed(11)
    np.random.seed(12)  # noqa: NPY002 (the global state is what is saved)
    random.seed(13)
    path = save_checkpoint(
        tmp_path, 3, model=model, optimizers=opts, meta={"epoch": 1, "note": "x"}
    )
    expected = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002

    ckpt = load_checkpoint(path)
    assert ckpt.step == 3 and ckpt.meta["note"] == "x" and ckpt.meta["epoch"] == 1
    fresh, fresh_opts = _trained(seed=5)
    restore_model(ckpt, fresh)
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k])
    for name, opt in fresh_opts.items():
        restore_optimizer(ckpt, name, opt)
        a, b = opts[name].state_dict(), opt.state_dict()
        assert a["param_groups"] == b["param_groups"]
        for pid, st in a["state"].items():
            for key, val in st.items():
                assert torch.equal(val, b["state"][pid][key]), (name, pid, key)
    restore_rng_state(ckpt)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])  # noqa: NPY002
    assert random.random() == expected[2]
    # nothing but tensors in the tensors file, nothing pickled
    names = safetensors.torch.load_file(path.with_suffix(".safetensors")).keys()
    assert "rng.torch_cpu" in names and any(n.startswith("optim.aux.state.") for n in names)
    assert json.loads(path.read_text())["tensors_file"] == "step_000000003.safetensors"


def test_truncated_or_altered_tensors_are_reported_with_the_file(tmp_path: Path) -> None:
    model, opts = _trained()
    path = save_checkpoint(tmp_path, 7, model=model, optimizers=opts)
    tensors = path.with_suffix(".safetensors")
    blob = tensors.read_bytes()
    tensors.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint(path)
    assert str(tensors) in str(info.value)
    flipped = bytearray(blob)
    flipped[-1] ^= 0xFF
    tensors.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)
    tensors.unlink()
    with pytest.raises(CheckpointError, match="tensors file missing"):
        load_checkpoint(path)
    path.write_text('{"format_version": 1, "st')
    with pytest.raises(CheckpointError, match="not valid JSON") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    model, opts = _trained()
    path = save_checkpoint(tmp_path, 1, model=model, optimizers=opts)
    with pytest.raises(
        CheckpointError, match=r"shape of dec\.0\.bias: saved \(32,\), model \(16,\)"
    ) as info:
        restore_model(load_checkpoint(path), TinyVAE(aux=True, hidden=16))
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="unexpected"):
        restore_model(load_checkpoint(path), TinyVAE(aux=False))
    with pytest.raises(CheckpointError, match="no state for optimiser 'other'"):
        restore_optimizer(load_checkpoint(path), "other", opts["main"])


@pytest.mark.parametrize("fail_on_write", [1, 2], ids=["tensors", "json"])
def test_interrupted_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch, fail_on_write: int
) -> None:
    model, opts = _trained()
    good = save_checkpoint(tmp_path, 1, model=model, optimizers=opts)
    before = sorted(p.name for p in tmp_path.iterdir())
    real_fsync = vaelens.io.os.fsync
    calls = {"n": 0}

    def interrupted_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == fail_on_write:  # after the bytes are written, before the rename
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(vaelens.io.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, model=model, optimizers=opts)
    monkeypatch.undo()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in left if n.endswith(".tmp")]
    # the new checkpoint never counts: its JSON commit marker was not written
    assert latest_checkpoint(tmp_path) == good
    assert load_checkpoint(good).step == 1
    clean_partial(tmp_path)  # an orphan tensors file (json write interrupted) is removed
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_clean_partial_prune_and_listing(tmp_path: Path) -> None:
    model, opts = _trained()
    for step in (5, 10, 15):
        save_checkpoint(tmp_path, step, model=model, optimizers=opts)
    (tmp_path / ".step_000000020.safetensors.abc.tmp").write_bytes(b"half")  # SIGKILL mid-write
    checkpoint_paths(tmp_path, 25)[0].write_bytes(b"no sidecar")
    removed = {p.name for p in clean_partial(tmp_path)}
    assert removed == {".step_000000020.safetensors.abc.tmp", "step_000000025.safetensors"}
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        f"step_{s:09d}.json" for s in (5, 10, 15)
    ]
    gone = prune_checkpoints(tmp_path, keep=1)
    assert len(gone) == 2 and latest_checkpoint(tmp_path).name == "step_000000015.json"
    assert len(list(tmp_path.iterdir())) == 2
    assert latest_checkpoint(tmp_path / "absent") is None
