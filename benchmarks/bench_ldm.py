"""Latent diffusion cost on this machine: training samples/s, peak memory, sampling ms per clip.

Runs `action2sound.training.bench.bench_ldm` (the same as `action2sound bench`) for one or more presets:
full AdamW training steps on random latents and conditions of the preset's shapes, then 25 DPM-Solver++
steps with classifier-free guidance at batch 1 and 50. On CUDA: bf16 autocast, SDPA attention, and with
`--compile` torch.compile.

    .venv/bin/python benchmarks/bench_ldm.py --presets tiny small
    .venv/bin/python benchmarks/bench_ldm.py --presets paper --train-batch 90 --compile --json out.json

With `--variants`, `bench_variants` instead: the named ways to run the same training step and the same
sampling (eager / cuDNN autotuning / channels-last / one CUDA graph per step or per 25-step loop / compiled),
side by side in one process, plus kernel profiles (`--variants list` names them):

    .venv/bin/python benchmarks/bench_ldm.py --presets paper --variants train train-graph sample-graph

On a shared CPU, OMP_NUM_THREADS=1 is usually faster than the default: OpenMP threads that spin-wait for a
busy core make every step slower, not faster.
"""

from __future__ import annotations

import argparse
import json

from action2sound.training.bench import (
    SAMPLE_VARIANTS,
    TRAIN_VARIANTS,
    VARIANTS,
    bench_ldm,
    bench_variants,
    check_report,
    check_variants,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--device", help="torch device (default: cuda when there is one, else cpu)")
    ap.add_argument("--train-batch", type=int, help="training batch (default: the preset's, at most 90)")
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--sample-batches", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--sample-steps", type=int, default=25)
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    ap.add_argument("--variants", nargs="+", help="measure these bench_variants variants instead ('list': name them)")
    ap.add_argument("--json", help="also write every report to this JSON file")
    args = ap.parse_args()
    if args.variants == ["list"]:
        for name in VARIANTS:
            spec = TRAIN_VARIANTS.get(name) or SAMPLE_VARIANTS.get(name) or "kernel profile"
            print(f"{name:24s} {spec}")
        return
    if args.variants and args.compile:
        raise SystemExit("bench_ldm.py: --compile is for the plain run; with --variants name the compiled ones "
                         "(e.g. train-compiled, sample-compiled-graph)")
    reports, failed = [], []
    for name in args.presets:
        say = lambda line: print(line, flush=True)  # noqa: E731
        if args.variants:
            r = bench_variants(name, tuple(args.variants), device=args.device, train_batch=args.train_batch,
                               train_steps=args.train_steps, sample_batches=tuple(args.sample_batches),
                               sample_steps=args.sample_steps, progress=say)
            bad = check_variants(r)
        else:
            r = bench_ldm(name, device=args.device, train_batch=args.train_batch, train_steps=args.train_steps,
                          sample_batches=tuple(args.sample_batches), sample_steps=args.sample_steps,
                          compile=args.compile, progress=say)
            bad = check_report(r)  # the progress lines above were the report
        reports.append(r)
        if bad:
            failed.append(f"bench_ldm {name}: failed or not positive and finite: {bad}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(reports, f, indent=1, default=str)
    if failed:
        raise SystemExit("\n".join(failed))


if __name__ == "__main__":
    main()
