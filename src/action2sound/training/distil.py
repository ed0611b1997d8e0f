"""Distil the universal HiFi-GAN into the light `FastVocoder` (`action2sound distil-vocoder`).

1. `prepare`: every recording of the given folders (`media.AUDIO_EXTENSIONS`), resampled to 22,050 Hz and
   laid end to end with 0.1 s gaps, is cut into 3 s windows; each window's universal22k log mel goes
   through the unchanged universal HiFi-GAN, whose output is the target (the student learns the teacher's
   function, not the recordings). Written once to `teacher.npz` in the run folder (resumable: kept if there).
2. `distil`: random crops of `crop_frames` frames, loss = multi-resolution STFT distance (spectral convergence
   + log-magnitude L1, FFT sizes 256-2048) + L1 between log mels, AdamW with warm-up and cosine decay. With
   `adversarial` > 0, a multi-resolution spectrogram discriminator (`models.vocoder`) learns to tell the
   teacher's waves from the student's, and the student's loss adds `adversarial` x (LSGAN term + 2 x feature
   matching), on the first `adv_batch` crops of each batch (the discriminator is most of a step's cost).
   A checkpoint (`checkpoint.pt`: weights, optimiser, step, generator state) is written atomically every
   `save_every` steps and read back on restart, so a killed run continues where it stopped.
3. The weights go to `fast_vocoder.safetensors` (config in its metadata); `models.fast_vocoder.load_fast_vocoder`
   reads them.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..config import UNIVERSAL22K_AUDIO
from ..errors import Action2SoundError
from ..media import AUDIO_EXTENSIONS
from ..mel import MelTransform, crop_frames, mel_to_vocoder_input, wave_to_mel
from ..models.fast_vocoder import WEIGHTS, FastVocoder, FastVocoderConfig, load_fast_vocoder, save_fast_vocoder
from ..models.vocoder import (MultiResolutionDiscriminator, discriminator_loss, feature_matching_loss,
                              generator_adversarial_loss)

TEACHER = "teacher.npz"
CHECKPOINT = "checkpoint.pt"
RESOLUTIONS = ((256, 64), (512, 128), (1024, 256), (2048, 512))  # (n_fft, hop) of the STFT loss


def recordings(folders: list[Path], exclude: set[str] = frozenset()) -> list[Path]:
    """Audio files under the folders (recursively, sorted), leaving out any whose file name is in `exclude`."""
    files = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise Action2SoundError(f"{folder}: not a folder; give folders of recordings")
        files += sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS)
    files = [f for f in files if f.name not in exclude]
    if not files:
        raise Action2SoundError(f"no recordings ({', '.join(AUDIO_EXTENSIONS)}) in {', '.join(map(str, folders))}")
    return files


def vae_round_trip(mels: np.ndarray, model_dir: Path, batch: int = 16) -> np.ndarray:
    """Normalised padded mels [N, 80, frames] through a model directory's VAE (posterior mean, decoded; the
    padding frames zero): the smoothed mels a generating model's vocoder is given, to distil on beside the
    recordings' own."""
    from ..models.vae import encode_mel, latents_to_mels
    from ..weights import load_model_dir

    md = load_model_dir(model_dir, components=("vae",))
    if md.preset.audio != UNIVERSAL22K_AUDIO:
        raise Action2SoundError(f"{model_dir}: its VAE reads the {md.preset.audio.name} mel, not universal22k; "
                                "give a universal22k model directory (e.g. the default model) to --vae")
    out = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(mels), batch), desc="VAE round trip", unit="batch"):
            mean, _ = encode_mel(md.vae, torch.from_numpy(mels[i:i + batch]))
            out.append(latents_to_mels(md.vae, mean * md.vae.config.scaling_factor, md.preset))
    decoded = torch.cat(out).numpy()
    return np.pad(decoded, ((0, 0), (0, 0), (0, mels.shape[-1] - decoded.shape[-1])))  # the padding frames


def prepare(files: list[Path], out: Path, batch: int = 4, vae_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Mels [N, 80, frames] and the teacher's waves [N, frames * hop] of 3 s windows of the recordings (and, with
    `vae_dir`, of the same windows' mels after that model's VAE: N doubles)."""
    path = out / TEACHER
    names = np.array(sorted(str(f) for f in files))
    vae_name = np.array(str(vae_dir or ""))
    if path.is_file():
        with np.load(path) as z:
            if "files" not in z.files or not np.array_equal(z["files"], names):
                raise Action2SoundError(f"{path} was made from other recordings than these; give another --out")
            if (str(z["vae"]) if "vae" in z.files else "") != str(vae_name):
                raise Action2SoundError(f"{path} was made with another --vae; give another --out")
            return {k: z[k] for k in z.files}
    from .. import media
    from ..models.vocoder import HifiGanRunner, load_universal_hifigan, vocode

    p = UNIVERSAL22K_AUDIO
    gap = np.zeros(p.sample_rate // 10, np.float32)
    parts = []
    for f in tqdm(files, desc="read recordings", unit="file"):
        try:
            parts += [media.read_audio_file(f, p.sample_rate).astype(np.float32), gap]
        except Action2SoundError as err:
            tqdm.write(f"skipped: {err}")
    stream = np.concatenate(parts)
    n = len(stream) // p.num_samples
    if n == 0:
        raise Action2SoundError(f"the recordings hold {len(stream) / p.sample_rate:.1f} s; distillation needs 3 s")
    windows = stream[: n * p.num_samples].reshape(n, p.num_samples)
    normalised = wave_to_mel(windows, p)
    if vae_dir is not None:
        normalised = np.concatenate([normalised, vae_round_trip(normalised, vae_dir)])
    mels = mel_to_vocoder_input(crop_frames(normalised, p), p).astype(np.float32)
    teacher = HifiGanRunner(load_universal_hifigan(), mixed=False)  # the generator's function, 1.9x faster on CPU
    waves = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(mels), batch), desc="teacher (universal HiFi-GAN)", unit="batch"):
            waves.append(vocode(teacher, torch.from_numpy(mels[i:i + batch])).numpy())
    data = {"mels": mels, "waves": np.concatenate(waves).astype(np.float32), "files": names, "vae": vae_name}
    tmp = out / (TEACHER + ".tmp.npz")
    np.savez(tmp, **data)
    os.replace(tmp, path)
    return data


def stft_loss(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean over RESOLUTIONS of spectral convergence + mean |log |X| - log |R||, waves [B, T]."""
    total = x.new_zeros(())
    for n_fft, hop in RESOLUTIONS:
        win = torch.hann_window(n_fft, device=x.device)
        mx = torch.stft(x, n_fft, hop, window=win, return_complex=True).abs().clamp_min(1e-6)
        mr = torch.stft(ref, n_fft, hop, window=win, return_complex=True).abs().clamp_min(1e-6)
        sc = torch.linalg.vector_norm(mr - mx) / torch.linalg.vector_norm(mr).clamp_min(1e-6)
        total = total + sc + (mx.log() - mr.log()).abs().mean()
    return total / len(RESOLUTIONS)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def distil(folders: list[Path], out: Path, steps: int = 6000, batch_size: int = 16, crop_frames: int = 80,
           lr: float = 5e-4, warmup: int = 200, save_every: int = 250, seed: int = 0, exclude: set[str] = frozenset(),
           cfg: FastVocoderConfig = FastVocoderConfig(), mel_weight: float = 0.5, vae_dir: Path | None = None,
           init: Path | None = None, adversarial: float = 0.0, adv_batch: int = 8) -> Path:
    """Train (or resume) a FastVocoder in `out`; returns the weights' path. `init`: start from these weights
    (`fast_vocoder.safetensors`, its shape replaces `cfg`) instead of random ones; `vae_dir`: see `prepare`;
    `adversarial`: weight of the discriminator's terms (0: none)."""
    out.mkdir(parents=True, exist_ok=True)
    start = load_fast_vocoder(init).train() if init is not None else None
    cfg = start.cfg if start is not None else cfg
    data = prepare(recordings(folders, exclude), out, vae_dir=vae_dir)
    mels, waves = torch.from_numpy(data["mels"]), torch.from_numpy(data["waves"])
    n, _, frames = mels.shape
    hop = cfg.hop
    crop = min(crop_frames, frames)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = FastVocoder(cfg) if start is None else start
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup)))) * 0.95 + 0.05

    def optimiser(net: torch.nn.Module):  # student and discriminator alike: AdamW, warm-up, cosine decay
        o = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=0.01)
        return o, torch.optim.lr_scheduler.LambdaLR(o, factor)

    opt, sched = optimiser(model)
    disc = opt_d = sched_d = None
    if adversarial > 0:
        with torch.random.fork_rng():
            torch.manual_seed(seed + 1)
            disc = MultiResolutionDiscriminator()
        opt_d, sched_d = optimiser(disc)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    ckpt_path = out / CHECKPOINT
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["config"] != cfg.to_dict():
            raise Action2SoundError(f"{ckpt_path}: written for another network shape; use a new --out")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        gen.set_state(ckpt["gen"])
        step = ckpt["step"]
        if (disc is not None) != ("disc" in ckpt):
            raise Action2SoundError(f"{ckpt_path}: written by a run {'without' if disc is not None else 'with'} "
                                    "--adversarial; resume it as it was started, or use a new --out")
        if disc is not None:
            disc.load_state_dict(ckpt["disc"])
            opt_d.load_state_dict(ckpt["opt_d"])
            sched_d.load_state_dict(ckpt["sched_d"])
    (out / "settings.json").write_text(json.dumps({
        "folders": [str(f) for f in folders], "windows": n, "steps": steps, "batch_size": batch_size,
        "crop_frames": crop, "lr": lr, "warmup": warmup, "seed": seed, "config": cfg.to_dict(),
        "excluded": sorted(exclude), "mel_weight": mel_weight, "vae": str(vae_dir or ""), "init": str(init or ""),
        "adversarial": adversarial, "adv_batch": adv_batch},
        indent=1))
    mel_fn = MelTransform(UNIVERSAL22K_AUDIO, normalised=False)
    log = (out / "log.tsv").open("a")
    model.train()
    bar = tqdm(total=steps, initial=step, desc="distil fast vocoder", unit="step")
    t_last = time.perf_counter()
    while step < steps:
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        start = torch.randint(0, frames - crop + 1, (batch_size,), generator=gen)
        x = torch.stack([mels[i, :, s:s + crop] for i, s in zip(idx.tolist(), start.tolist())])
        y = torch.stack([waves[i, s * hop:(s + crop) * hop] for i, s in zip(idx.tolist(), start.tolist())])
        pred = model(x.transpose(1, 2))
        l_stft = stft_loss(pred, y)
        l_mel = F.l1_loss(mel_fn(pred), mel_fn(y))
        loss = l_stft + mel_weight * l_mel
        l_d = l_adv = torch.zeros(())
        if disc is not None:
            real, fake = y[:adv_batch], pred[:adv_batch]
            # The discriminator: teacher vs student, no gradient into the student.
            logits_real, _ = disc(real)
            logits_fake, _ = disc(fake.detach())
            l_d = discriminator_loss(logits_real, logits_fake)
            opt_d.zero_grad(set_to_none=True)
            l_d.backward()
            torch.nn.utils.clip_grad_norm_(disc.parameters(), 10.0)
            opt_d.step()
            sched_d.step()
            # The student: fool the updated discriminator and match its features on the teacher's wave.
            logits_fake, feats_fake = disc(fake)
            with torch.no_grad():
                _, feats_real = disc(real)
            l_adv = generator_adversarial_loss(logits_fake) + 2.0 * feature_matching_loss(feats_real, feats_fake)
            loss = loss + adversarial * l_adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        bar.set_postfix(stft=f"{l_stft.item():.3f}", mel=f"{l_mel.item():.3f}",
                        **({"d": f"{l_d.item():.3f}", "adv": f"{l_adv.item():.3f}"} if disc is not None else {}))
        log.write(f"{step}\t{l_stft.item():.5f}\t{l_mel.item():.5f}\t{time.perf_counter() - t_last:.3f}"
                  f"\t{l_d.item():.5f}\t{l_adv.item():.5f}\n")
        t_last = time.perf_counter()
        if step % save_every == 0 or step == steps:
            log.flush()
            state = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                     "gen": gen.get_state(), "step": step, "config": cfg.to_dict()}
            if disc is not None:
                state |= {"disc": disc.state_dict(), "opt_d": opt_d.state_dict(), "sched_d": sched_d.state_dict()}
            _atomic_save(state, ckpt_path)
            save_fast_vocoder(model, out / WEIGHTS, step)
    bar.close()
    log.close()
    return out / WEIGHTS
