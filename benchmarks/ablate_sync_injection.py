"""Which way into the UNet should the sync stream take? A small ablation on the tiny preset (CPU, minutes).

A toy task where only the sync stream knows *when*: each clip shows 1-3 flashes at uniform random times (no
centre prior), its "sound" latent [C, F, W] holds a fixed spectral pattern in the column of each flash and a
weaker echo in the next, over noise. The cross-attention context is the learned nulls, so timing can come only
from the stream. Steps:

1. train a tiny sync encoder on flash + click clips (offset contrast), freeze it; its column features of the
   toy clips are the stream;
2. train the tiny LatentDiffusion for `--steps` batches with each injection (`none`, `channels`, `film`),
   the same seed, data and schedule; the stream is nulled (zeros) where the video condition is dropped;
3. on held-out clips: the diffusion loss at fixed (t, noise) pairs, and samples (guidance 3 against the null
   stream, 10 DPM steps) scored by event-column F1 (a column whose pattern correlation is a local maximum
   above half the template's, against the flash columns; exact column and +-1 column).

    .venv/bin/python benchmarks/ablate_sync_injection.py --steps 400
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from action2sound.config import preset
from action2sound.mel import wave_to_mel
from action2sound.models.ldm import LatentDiffusion
from action2sound.models.sync_stream import SyncEncoder, column_times, sync_frame_times
from action2sound.sampling import guided, sample


def toy(p, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(frames uint8 [n, N, S, S, 3], waves [n, T], event times per clip): flashes with a click at each."""
    rng = np.random.default_rng(seed)
    times, s, sr = sync_frame_times(p), p.sync_stream.size, p.audio.sample_rate
    frames = np.zeros((n, len(times), s, s, 3), np.uint8)
    waves = rng.normal(0, 1e-3, (n, p.audio.num_samples)).astype(np.float32)
    events = []
    for i in range(n):
        ev = np.sort(rng.uniform(0.05, p.audio.duration - 0.15, rng.integers(1, 4)))
        events.append(ev)
        for te in ev:
            y, x = rng.integers(0, s // 2, 2)
            frames[i, (times >= te) & (times < te + 0.1), y:y + s // 2, x:x + s // 2] = rng.integers(128, 256, 3)
            j, m = int(round(te * sr)), int(0.04 * sr)
            waves[i, j:j + m] += (rng.normal(0, 0.5, m) * np.exp(-np.arange(m) / (0.008 * sr)))[: waves.shape[1] - j]
    return frames, waves, events


def event_columns(p, events: list[np.ndarray]) -> list[np.ndarray]:
    """The latent column holding each event (nearest column centre)."""
    cols = column_times(p.audio, p.vae.downsample, p.latent_shape[2])
    return [np.unique(np.abs(cols[None] - ev[:, None]).argmin(axis=1)) for ev in events]


def latents(p, cols: list[np.ndarray], template: torch.Tensor, seed: int) -> torch.Tensor:
    """Toy 'sound' latents [n, C, F, W]: the template at each event column, half of it in the next, over noise."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(len(cols), *p.latent_shape, generator=g)
    for i, cs in enumerate(cols):
        for c in cs:
            x[i, :, :, c] += template
            if c + 1 < x.shape[-1]:
                x[i, :, :, c + 1] += 0.5 * template
    return x


def column_f1(x: torch.Tensor, template: torch.Tensor, cols: list[np.ndarray], tol: int) -> float:
    """F1 of detected event columns (local maxima of the pattern correlation above half the template's)."""
    corr = torch.einsum("bcfw,cf->bw", x, template) / template.pow(2).sum()  # 1 at a clean event column
    hits = n_ref = n_est = 0
    for i, ref in enumerate(cols):
        c = corr[i].numpy()
        pad = np.pad(c, 1, constant_values=-np.inf)
        est = np.flatnonzero((c > 0.5) & (c >= pad[:-2]) & (c >= pad[2:]))
        used = set()
        for r in ref:
            m = [e for e in est if abs(e - r) <= tol and e not in used]
            if m:
                used.add(m[0])
                hits += 1
        n_ref, n_est = n_ref + len(ref), n_est + len(est)
    return 2 * hits / max(1, n_ref + n_est)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train-clips", type=int, default=256)
    ap.add_argument("--test-clips", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = preset("tiny")
    t0 = time.process_time()

    # ---- 1. the frozen sync encoder and the stream of every toy clip
    frames, waves, events = toy(base, args.train_clips + args.test_clips, args.seed)
    mels = torch.from_numpy(np.stack([wave_to_mel(w, base.audio) for w in waves]))
    frames_t = torch.from_numpy(frames)
    torch.manual_seed(args.seed)
    enc = SyncEncoder(base)
    opt = torch.optim.AdamW(enc.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(args.seed)
    for _ in range(150):
        idx = torch.randint(0, args.train_clips, (8,), generator=g)
        loss = enc.offset_loss(frames_t[idx], mels[idx], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    with torch.no_grad():
        stream = torch.cat([enc.video_features(frames_t[i:i + 32]) for i in range(0, len(frames_t), 32)])
    cols = event_columns(base, events)
    template = torch.randn(base.latent_shape[:2], generator=torch.Generator().manual_seed(123))
    x0 = latents(base, cols, template, args.seed + 1)
    tr, te = slice(0, args.train_clips), slice(args.train_clips, None)
    results = {"encoder_final_loss": float(loss), "encoder_cpu_s": time.process_time() - t0, "runs": {}}

    # ---- 2. + 3. one LDM per injection
    for kind in ("none", "channels", "film"):
        p = dataclasses.replace(base, sync_stream=dataclasses.replace(
            base.sync_stream, enabled=kind != "none", injection=kind if kind != "none" else "channels"))
        torch.manual_seed(args.seed)
        ldm = LatentDiffusion.from_preset(p)
        opt = torch.optim.AdamW(ldm.parameters(), lr=args.lr)
        g = torch.Generator().manual_seed(args.seed)
        t1 = time.process_time()
        for _ in range(args.steps):
            idx = torch.randint(0, args.train_clips, (args.batch,), generator=g)
            b = len(idx)
            t = torch.randint(0, 1000, (b,), generator=g)
            noise = torch.randn(b, *p.latent_shape, generator=g)
            drop = torch.rand(b, generator=g) < p.diffusion.p_drop_video
            abar = ldm.alphas_cumprod[t].view(b, 1, 1, 1)
            x_t = abar.sqrt() * x0[tr][idx] + (1 - abar).sqrt() * noise
            ctx = ldm.context(None, None, batch_size=b)
            sync = torch.where(drop.view(b, 1, 1), torch.zeros_like(stream[tr][idx]), stream[tr][idx])
            pred = ldm(x_t, t, ctx, sync if kind != "none" else None)
            loss = torch.nn.functional.mse_loss(pred, noise)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ldm.parameters(), 1.0)
            opt.step()
        train_cpu = time.process_time() - t1
        ldm.eval()
        with torch.no_grad():
            gv = torch.Generator().manual_seed(999)
            n = x0[te].shape[0]
            val = []
            for t_val in (100, 300, 500, 700, 900):
                t = torch.full((n,), t_val)
                noise = torch.randn(n, *p.latent_shape, generator=gv)
                abar = ldm.alphas_cumprod[t].view(n, 1, 1, 1)
                pred = ldm(abar.sqrt() * x0[te] + (1 - abar).sqrt() * noise, t, ldm.context(None, None, batch_size=n),
                           stream[te] if kind != "none" else None)
                val.append(float(torch.nn.functional.mse_loss(pred, noise)))
            s_te = stream[te] if kind != "none" else None
            ctx = ldm.context(None, None, batch_size=n)

            def model_fn(x, t, c, s=s_te):
                if s is None:
                    return ldm(x, t, c)
                k = x.shape[0] // n  # guided() stacks [full ; null]: the null pass gets the zero stream
                return ldm(x, t, c, torch.cat([s] + [torch.zeros_like(s)] * (k - 1)))

            w = 3.0 if kind != "none" else 1.0
            den = guided(model_fn, ctx, ctx, None, w)
            out = sample(den, (n, *p.latent_shape), "dpm", 10, generator=torch.Generator().manual_seed(7),
                         diffusion=p.diffusion)
        results["runs"][kind] = {
            "final_train_loss": float(loss), "val_loss": float(np.mean(val)),
            "column_f1_exact": column_f1(out, template, cols[te], 0),
            "column_f1_pm1": column_f1(out, template, cols[te], 1),
            "train_cpu_s": train_cpu,
        }
        print(kind, results["runs"][kind], flush=True)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
