"""Kill-and-resume, NaN handling and run-directory bookkeeping of vaelens.train.train."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from test_train_fixtures import MODEL, TinyVAE, tiny_dataset
from test_train_fixtures import trusted_load_run as load_run
from test_train_fixtures import trusted_train as train
from vaelens.errors import ConfigError, TrainingDivergedError
from vaelens.train import (
    TrainConfig,
    list_checkpoints,
    load_checkpoint,
    read_metrics,
    read_status,
)

VOLATILE = {"images_per_s", "time_s"}


def _config(out: Path, **kw) -> TrainConfig:
    base = {
        "model": MODEL,
        "dataset": "tiny",
        "steps": 60,
        "batch_size": 8,
        "seed": 3,
        "lr": 3e-3,
        "weight_decay": 1e-5,
        "schedule": "cosine",
        "checkpoint_every": 10,
        "log_every": 4,
        "device": "cpu",
        "num_threads": 1,
        "out": out,
    }
    base.update(kw)
    return TrainConfig(**base)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    model, _ = load_run(run_dir)
    return model.state_dict()


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs between {a} and {b}"


def _stable_metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_metrics(run_dir)]


@pytest.mark.parametrize("aux", [False, True], ids=["vae", "with_aux_optimiser"])
def test_exception_at_random_step_then_resume_is_bit_identical(tmp_path, monkeypatch, aux) -> None:
    ds = tiny_dataset()
    params = {"aux": aux}
    ref = train(_config(tmp_path / "ref", model_params=params), progress=False, dataset=ds)
    assert ref.status == "completed" and ref.step == 60

    crash_at = int(np.random.default_rng(7 + aux).integers(11, 59))  # after the first checkpoint
    original = TinyVAE.training_losses

    def crashing(self, x, *, step=0):
        if step == crash_at:
            raise RuntimeError("injected crash")
        return original(self, x, step=step)

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(TinyVAE, "training_losses", crashing)
        with pytest.raises(RuntimeError, match="injected crash"):
            train(_config(run, model_params=params), progress=False, dataset=ds)
    status = read_status(run)
    assert status["status"] == "failed" and "injected crash" in status["error"]
    assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1]).step == crash_at // 10 * 10

    res = train(_config(run, model_params=params), progress=False, dataset=ds)
    assert res.resumed_from == crash_at // 10 * 10 and res.step == 60
    assert read_status(run)["status"] == "completed"
    _assert_same_weights(ref.run_dir, run)
    # metrics: every logged step once, same loss values as the uninterrupted run
    assert _stable_metrics(run) == _stable_metrics(ref.run_dir)


def _slow_child(config_json: dict) -> None:
    """Body of the forked child: the same run, slowed down so the parent can kill it."""
    original = TinyVAE.training_losses

    def slow(self, x, *, step=0):
        time.sleep(0.004)
        return original(self, x, step=step)

    TinyVAE.training_losses = slow
    train(TrainConfig(**config_json), progress=False, dataset=tiny_dataset())


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path) -> None:
    ds = tiny_dataset()
    run = tmp_path / "killed"
    cfg = _config(run, steps=300, checkpoint_every=25, log_every=10)
    # the reference first: the forked child then inherits every lazily imported module
    ref = train(cfg.model_copy(update={"out": tmp_path / "ref"}), progress=False, dataset=ds)
    # fork: the child inherits the imported modules, so it starts at once
    child = multiprocessing.get_context("fork").Process(
        target=_slow_child, args=(cfg.to_json_dict(),)
    )
    child.start()
    delay = float(np.random.default_rng().uniform(0.0, 0.05))  # an arbitrary moment
    deadline = time.monotonic() + 60
    try:
        while not any(int(p.stem[5:]) >= 50 for p in list_checkpoints(run / "checkpoints")):
            assert child.is_alive(), f"the child ended early with exit code {child.exitcode}"
            assert time.monotonic() < deadline, "the child never wrote a checkpoint"
            time.sleep(0.005)
        time.sleep(delay)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    assert child.exitcode == -signal.SIGKILL
    assert read_status(run)["status"] == "running"  # a killed run cannot say otherwise
    killed_at = load_checkpoint(list_checkpoints(run / "checkpoints")[-1]).step
    assert 50 <= killed_at < 300

    resumed = train(cfg, progress=False, dataset=ds)
    assert resumed.resumed_from == killed_at and resumed.step == 300
    _assert_same_weights(ref.run_dir, run)
    steps = [r["step"] for r in read_metrics(run)]
    assert steps == list(range(10, 301, 10))
    assert _stable_metrics(run) == _stable_metrics(ref.run_dir)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_nan_stops_the_run_naming_step_and_term_and_keeps_last_checkpoint(tmp_path) -> None:
    run = tmp_path / "nan"
    cfg = _config(run, model_params={"nan_at": 27}, checkpoint_every=10)
    with pytest.raises(TrainingDivergedError) as info:
        train(cfg, progress=False, dataset=tiny_dataset())
    msg = str(info.value)
    assert "step 27" in msg and "'kl'" in msg and "step_000000020" in msg
    status = read_status(run)
    assert status["status"] == "failed" and status["error_type"] == "TrainingDivergedError"
    assert "step 27" in status["error"]
    ckpts = list_checkpoints(run / "checkpoints")
    assert [load_checkpoint(p).step for p in ckpts] == [10, 20]
    # the last good checkpoint is intact and holds finite weights
    model, _ = load_run(run)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert max(r["step"] for r in read_metrics(run)) <= 27


def test_resume_with_a_different_configuration_is_refused(tmp_path) -> None:
    run = tmp_path / "run"
    train(_config(run, steps=20), progress=False, dataset=tiny_dataset())
    with pytest.raises(ConfigError, match=r"lr: 0\.003 -> 0\.01"):
        train(_config(run, steps=20, lr=1e-2), progress=False, dataset=tiny_dataset())


def test_completed_run_is_not_retrained_and_can_be_extended(tmp_path) -> None:
    ds = tiny_dataset()
    run = tmp_path / "run"
    first = train(_config(run, steps=20, schedule="constant"), progress=False, dataset=ds)
    again = train(_config(run, steps=20, schedule="constant"), progress=False, dataset=ds)
    assert again.resumed_from == 20 and again.step == 20 and again.checkpoint == first.checkpoint
    longer = train(_config(run, steps=30, schedule="constant"), progress=False, dataset=ds)
    assert longer.step == 30 and longer.resumed_from == 20
    ref = train(
        _config(tmp_path / "ref", steps=30, schedule="constant"), progress=False, dataset=ds
    )
    _assert_same_weights(ref.run_dir, run)


def test_run_directory_layout_and_load_run(tmp_path) -> None:
    run = tmp_path / "run"
    res = train(_config(run, steps=24, n_train=32), progress=True, dataset=tiny_dataset())
    assert json.loads((run / "config.json").read_text())["model"] == MODEL
    assert res.epoch == 24 // (32 // 8)
    recs = read_metrics(run)
    assert [r["step"] for r in recs] == [4, 8, 12, 16, 20, 24]
    assert {"loss", "rec", "kl", "lr", "epoch"} <= set(recs[0])
    assert recs[-1]["lr"] < recs[0]["lr"]  # cosine decay
    model, cfg = load_run(run)
    assert isinstance(model, TinyVAE) and not model.training and cfg.steps == 24


def test_tensorboard_and_missing_wandb(tmp_path, monkeypatch) -> None:
    run = tmp_path / "tb"
    train(_config(run, steps=8, tensorboard=True), progress=False, dataset=tiny_dataset())
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match="wandb"):
        train(_config(tmp_path / "wb", steps=8, wandb=True), progress=False, dataset=tiny_dataset())
    assert read_status(tmp_path / "wb")["status"] == "failed"


def test_bf16_autocast_on_cpu_and_fp16_refused(tmp_path) -> None:
    res = train(
        _config(tmp_path / "bf16", steps=8, amp="bf16"), progress=False, dataset=tiny_dataset()
    )
    assert res.status == "completed" and all(
        np.isfinite(r["loss"]) for r in read_metrics(res.run_dir)
    )
    with pytest.raises(ConfigError, match="fp16"):
        train(
            _config(tmp_path / "fp16", steps=8, amp="fp16"), progress=False, dataset=tiny_dataset()
        )
    assert read_status(tmp_path / "fp16")["status"] == "failed"


def test_time_budget_stops_with_a_checkpoint_and_resumes_bit_identically(
    tmp_path, monkeypatch
) -> None:
    import vaelens.train.trainer as trainer

    ds = tiny_dataset()
    ref = train(_config(tmp_path / "ref"), progress=False, dataset=ds)
    clock = iter(np.arange(0.0, 1e6, 0.01))  # a fake clock: each reading is 10 ms later
    run, steps = tmp_path / "run", []
    with monkeypatch.context() as m:
        m.setattr(trainer.time, "perf_counter", lambda: float(next(clock)))
        res = train(_config(run), progress=False, dataset=ds, time_budget=0.25)
        steps.append(res.step)
        while res.status == "stopped" and len(steps) < 40:
            assert read_status(run)["status"] == "stopped" and 0 < res.step < 60
            assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1]).step == res.step
            res = train(_config(run), progress=False, dataset=ds, time_budget=0.25)
            steps.append(res.step)
    assert res.status == "completed" and res.step == 60 and len(steps) > 2, steps
    assert steps == sorted(set(steps)), steps  # every call made progress
    assert any(s % 10 for s in steps[:-1]), steps  # stopped between regular checkpoints
    _assert_same_weights(ref.run_dir, run)
    assert _stable_metrics(run) == _stable_metrics(ref.run_dir)
    with pytest.raises(ConfigError, match="time_budget"):
        train(_config(tmp_path / "bad"), progress=False, dataset=ds, time_budget=0)


def test_lr_warmup_is_linear_then_follows_the_schedule(tmp_path) -> None:
    from vaelens.train.trainer import cosine_factor, lr_factor

    cfg = _config(tmp_path / "w", warmup_steps=10, lr=1e-2)
    assert lr_factor(0, cfg, 60) == pytest.approx(0.1 * cosine_factor(0, 60))
    assert lr_factor(4, cfg, 60) == pytest.approx(0.5 * cosine_factor(4, 60))
    assert lr_factor(30, cfg, 60) == pytest.approx(cosine_factor(30, 60))
    res = train(cfg, progress=False, dataset=tiny_dataset())
    lrs = [r["lr"] for r in read_metrics(res.run_dir)]
    # the record at step 4 was written after step 3 ran, with lr factor (3 + 1) / 10
    assert lrs[0] == pytest.approx(1e-2 * 0.4 * cosine_factor(3, 60))


class _Flat(TinyVAE):
    """A TinyVAE whose reconstruction term stops improving after step 12."""

    def training_losses(self, x, step=0):
        out = super().training_losses(x, step=step)
        rec = torch.tensor(100.0 - 5.0 * min(step, 12), dtype=out["loss"].dtype)
        out["rec"] = rec
        return out


def test_plateau_rule_stops_a_run_and_a_resume_keeps_it_stopped(tmp_path) -> None:
    ds = tiny_dataset()
    cfg = _config(tmp_path / "p", plateau_patience=12, steps=200)
    res = train(cfg, progress=False, dataset=ds, model=_Flat())
    # windows of 4 steps: the last improvement is the window ending at step 16 (steps 12-15
    # are flat, but its mean still improves on the window before); 12 steps later it fires
    assert res.status == "completed" and res.stopped_by == "plateau"
    assert res.step == 28, res.step
    status = read_status(res.run_dir)
    assert status["stopped_by"] == "plateau" and status["step"] == 28
    again = train(cfg, progress=False, dataset=ds, model=_Flat())
    assert again.step == 28 and again.stopped_by == "plateau"
    off = train(_config(tmp_path / "off", steps=40), progress=False, dataset=ds, model=_Flat())
    assert off.step == 40 and off.stopped_by is None


def test_plateau_rule_state_survives_a_checkpoint() -> None:
    from vaelens.train.stopping import PlateauRule

    rule = PlateauRule(10, 0.01, "rec")
    for step, v in [(4, 10.0), (8, 9.0), (12, 8.95)]:
        assert not rule.update(step, {"rec": v})
    copy = PlateauRule(10, 0.01, "rec")
    copy.load(rule.state())
    assert copy.best == 9.0 and copy.best_step == 8
    assert not copy.update(16, {"rec": 8.99}) and copy.update(18, {"rec": 8.99})
    assert PlateauRule(0, 0.01, "rec").update(100, {"rec": 1.0}) is False


def test_plateau_rule_waits_for_the_kl_warmup(tmp_path) -> None:
    """rec is lowest while the KL weight is ~0 and rises as it grows: those windows are
    not watched, or the rule would stop the run when the warm-up ends."""
    from vaelens.train.stopping import PlateauRule

    rising = [(s, {"rec": 5.0 + s / 10}) for s in range(10, 101, 10)]  # the warm-up
    rule = PlateauRule(20, 0.01, "rec", start=100)
    assert not any(rule.update(s, m) for s, m in rising) and rule.best_step == 100
    eager = PlateauRule(20, 0.01, "rec")
    assert any(eager.update(s, m) for s, m in rising)  # without start it fires at step 30
    flat = _Flat()  # the run that stops at step 28 in the test above, with a warm-up
    flat.kl_warmup = 60
    res = train(_config(tmp_path / "w", plateau_patience=12, steps=200), progress=False,
                dataset=tiny_dataset(), model=flat)  # fmt: skip
    assert res.stopped_by == "plateau" and res.step == 72, res.step  # 60 + 12


def test_adam_betas_are_the_main_optimisers_in_the_checkpoint_and_after_resume(tmp_path) -> None:
    """``adam_betas`` reaches train()'s Adam (saved in the checkpoint), a resumed run keeps
    it and ends where an uninterrupted one does, and the betas change the trained weights."""
    ds = tiny_dataset()
    betas = (0.5, 0.99)
    run = tmp_path / "run"
    train(_config(run, steps=20, adam_betas=betas, schedule="constant"), progress=False, dataset=ds)
    saved = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert tuple(saved.meta["optimizers"]["main"]["param_groups"][0]["betas"]) == betas
    train(_config(run, steps=30, adam_betas=betas, schedule="constant"), progress=False, dataset=ds)
    ref = train(
        _config(tmp_path / "ref", steps=30, adam_betas=betas, schedule="constant"),
        progress=False,
        dataset=ds,
    )
    _assert_same_weights(ref.run_dir, run)
    default = train(
        _config(tmp_path / "default", steps=30, schedule="constant"), progress=False, dataset=ds
    )
    with pytest.raises(AssertionError):
        _assert_same_weights(default.run_dir, run)
    with pytest.raises(ConfigError, match="adam_betas"):
        train(_config(run, steps=40, schedule="constant"), progress=False, dataset=ds)
