"""Training throughput of every variant on the roy2025 architecture (full width).

For each variant and batch size: images/s of the trainer's own optimiser step
(:class:`vaelens.train.trainer.StepRunner`: forward, backward, Adam, NaN check), the FLOPs
per image of one step's forward + backward (``torch.utils.flop_counter.FlopCounterMode``),
the achieved FLOP/s, and utilisation = achieved / the machine's dense fp32 matmul FLOP/s,
measured in the same run (a 2048 x 2048 matmul loop on all threads; bf16 matmuls when
``--amp bf16``). Timings on a shared machine are noisy: the peak is measured before every
row and at the end, and the median is used.

    python benchmarks/train_throughput.py               # all variants, batch 64 and 256
    python benchmarks/train_throughput.py --quick       # fewer steps, plain VAE only
    python benchmarks/train_throughput.py --device cuda --amp bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from vaelens.models import build_model, list_models
from vaelens.models.registry import ROY2025_PRESET
from vaelens.train.trainer import StepRunner, default_channels_last

VARIANTS = ("vae", "beta_vae", "factor_vae", "beta_tc_vae", "dip_vae_i", "dip_vae_ii", "vq_vae")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul_flops(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Dense matmul FLOP/s: ``2 n^3`` per ``n x n`` product (n = 2048; 8192 on CUDA)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        if device.type == "cuda" and reps % 10:
            continue
        _sync(device)
    _sync(device)
    return reps * 2.0 * n**3 / (time.perf_counter() - t0)


def _batch(n: int, channels: int, device: torch.device, channels_last: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, channels, 64, 64, generator=g) > 0.85).float().to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def bench_variant(
    name: str,
    batch: int,
    *,
    device: torch.device,
    steps: int,
    warmup: int,
    channels_last: bool,
    amp: str,
    compile: bool,
) -> dict[str, float]:
    """images/s, FLOPs per image and step time of ``name`` at ``batch``."""
    torch.manual_seed(0)
    params = dict(ROY2025_PRESET.get(name, {}))
    model = build_model(name, **params).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    runner = StepRunner(model, lr=1e-3, weight_decay=1e-5, device=device, amp=amp, compile=compile)
    x = _batch(batch, model.image_shape[0], device, channels_last)
    with FlopCounterMode(display=False) as fc:  # forward + backward of one step
        with torch.autocast(
            device.type,
            dtype=runner.amp_dtype or torch.float32,
            enabled=runner.amp_dtype is not None,
        ):
            out = model.training_losses(x, step=0)
        out["loss"].backward(retain_graph="aux_loss" in out)
        if "aux_loss" in out:
            out["aux_loss"].backward()
    flops = fc.get_total_flops() / batch
    t0 = time.perf_counter()
    for s in range(warmup):
        runner(x, s)
    _sync(device)
    t_warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in range(steps):
        runner(x, warmup + s)
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    return {"flops_per_image": flops, "step_s": dt, "images_per_s": batch / dt, "warmup_s": t_warm}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--variants", nargs="*", default=None, help=f"default: all of {VARIANTS}")
    ap.add_argument("--batch-sizes", nargs="*", type=int, default=[64, 256])
    ap.add_argument(
        "--steps", type=int, default=None, help="timed steps (default 10; 4 with --quick)"
    )
    ap.add_argument("--quick", action="store_true", help="short run: plain VAE, few steps")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    ap.add_argument("--compile", action="store_true", help="torch.compile the loss function")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    variants = args.variants or (
        ["vae"] if args.quick else [v for v in VARIANTS if v in list_models()]
    )
    steps = args.steps or (4 if args.quick else 10)
    warmup = 2 if args.quick else 3
    # "auto": the trainer's own choice
    cl = {"on": True, "off": False, "auto": default_channels_last(device)}[args.channels_last]
    peak_dtype = (
        torch.bfloat16
        if args.amp == "bf16"
        else (torch.float16 if args.amp == "fp16" else torch.float32)
    )

    peaks = []
    rows = []
    for name in variants:
        for b in args.batch_sizes:
            peaks.append(peak_matmul_flops(device, peak_dtype, seconds=1.0))
            r = bench_variant(
                name,
                b,
                device=device,
                steps=steps,
                warmup=warmup,
                channels_last=cl,
                amp=args.amp,
                compile=args.compile,
            )
            rows.append({"variant": name, "batch": b, **r})
            print(
                f"  {name:12s} b={b:4d}  {r['images_per_s']:9.1f} img/s  step {r['step_s'] * 1e3:8.1f} ms",
                file=sys.stderr,
            )
    peaks.append(peak_matmul_flops(device, peak_dtype, seconds=1.0))
    peak = statistics.median(peaks)
    dev_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
    )
    print(
        f"\ndevice: {dev_name}; torch {torch.__version__}; channels_last={cl}; amp={args.amp}; "
        f"compile={args.compile}"
    )
    print(
        f"peak dense matmul ({str(peak_dtype).replace('torch.', '')}): {peak / 1e9:.1f} GFLOP/s "
        f"(median of {len(peaks)} measurements between the rows, range "
        f"{min(peaks) / 1e9:.1f}-{max(peaks) / 1e9:.1f})\n"
    )
    header = f"{'variant':12s} {'batch':>5s} {'img/s':>9s} {'ms/step':>9s} {'MFLOP/img':>10s} {'GFLOP/s':>9s} {'util':>6s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        achieved = r["flops_per_image"] * r["images_per_s"]
        r["achieved_flops"] = achieved
        r["peak_flops"] = peak
        r["utilisation"] = achieved / peak
        print(
            f"{r['variant']:12s} {r['batch']:5d} {r['images_per_s']:9.1f} {r['step_s'] * 1e3:9.1f} "
            f"{r['flops_per_image'] / 1e6:10.1f} {achieved / 1e9:9.1f} {r['utilisation']:6.1%}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {"device": dev_name, "channels_last": cl, "amp": args.amp, "rows": rows},
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
