"""How a model's VAE decodes a window's two ends, with and without edge columns (`vae.decode_edge_columns`).

    .venv/bin/python benchmarks/edge_decode.py                       # stationary noise, the embedded model
    .venv/bin/python benchmarks/edge_decode.py --waves "EVAL/audio/*_gt.wav" --plot edges.png

Each wave (a 3 s recording, e.g. the ground truths an `evaluate` run wrote, or stationary noise at three levels
when none is given) is encoded by the model's VAE (posterior mean) and decoded as it is and with the edge columns,
then vocoded. Prints, per decode, the mean L1 to the wave's own mel over the first 8 / last 16 frames and over all
frames, the onsets the benchmark's detector finds in the first 20 ms and after the last 0.15 s (a recording
has none there), and the median over waves of the last 0.1 s's level over the wave's median 0.1 s (a fade reads
below 0 dB, a swell above; docs/RESULTS.md, session 11). `--plot` draws the mean mel level per frame at both ends.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
import torch

from action2sound.errors import Action2SoundError
from action2sound.evaluation.benchmark_metrics import detect_onsets
from action2sound.media import read_audio_file
from action2sound.mel import fit_wave, wave_to_mel
from action2sound.models.vae import decode_latent, encode_mel
from action2sound.pipeline import load_pipeline, mels_to_waves
from action2sound.weights import default_model_dir

HEAD, TAIL = 8, 16  # frames looked at: the decoder's zero padding reaches about this far at each end


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=default_model_dir(), help="model directory (default: embedded)")
    ap.add_argument("--waves", help="a glob of recordings (default: stationary noise at three levels)")
    ap.add_argument("--edge-columns", type=int, help="the mended decode's columns (default: the model's, else 2)")
    ap.add_argument("--plot", type=Path, help="write a picture of both ends' mean mel level here")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model, device="cpu")
    p = pipe.preset.audio
    k = args.edge_columns or pipe.preset.vae.decode_edge_columns or 2
    if args.waves:
        paths = sorted(glob.glob(args.waves))
        if not paths:
            raise Action2SoundError(f"--waves {args.waves!r} matches no file; give a glob of audio files")
        waves = np.stack([fit_wave(read_audio_file(f, p.sample_rate), p) for f in paths])
    else:
        rng = np.random.default_rng(0)
        waves = np.stack([fit_wave(a * rng.standard_normal(p.num_samples), p) for a in (0.03, 0.1, 0.3)])
    mel = torch.from_numpy(wave_to_mel(waves, p))  # [N, n_mels, padded]
    real = mel[..., : p.num_frames]
    with torch.inference_mode():
        mean, _ = encode_mel(pipe.vae, mel)
        z = mean * pipe.vae.config.scaling_factor
        decoded = {"as it is": decode_latent(pipe.vae, z, p.num_frames),
                   f"edge columns {k}": decode_latent(pipe.vae, z, p.num_frames, edge_columns=k)}
    ms = 1000 * p.hop / p.sample_rate
    print(f"{len(waves)} waves, model {args.model.name}, {p.num_frames} frames of {ms:.1f} ms")
    levels = {"the wave's own mel": real.mean(1).median(0).values.numpy()}
    for name, m in decoded.items():
        err = (m - real).abs()
        out = mels_to_waves(pipe.vocoder, m, pipe.preset)
        onsets = [detect_onsets(w, p.sample_rate) for w in out]
        start = sum(int(np.sum(t < 0.02)) for t in onsets)
        end = sum(int(np.sum(t > p.duration - 0.15)) for t in onsets)
        print(f"  {name:16s} L1 first {HEAD} frames {err[..., :HEAD].mean():.4f}, last {TAIL} "
              f"{err[..., -TAIL:].mean():.4f}, all {err.mean():.4f}; onsets at the start {start}, at the end {end}; "
              f"last 0.1 s vs the median 0.1 s {np.median([_tail_db(w, p.sample_rate) for w in out]):+.1f} dB")
        levels[name] = m.mean(1).median(0).values.numpy()  # [frames]: median over waves of the mean over bins
    if args.plot:
        _plot(levels, p.num_frames, args.plot)
        print(f"wrote {args.plot}")


def _tail_db(wave: np.ndarray, rate: int) -> float:
    """Level of a wave's last 0.1 s over its median 0.1 s, in dB (a recording: about 0; a fade: below; a swell:
    above, which no onset detector reports)."""
    n = int(0.1 * rate)
    power = np.mean(wave[: wave.size // n * n].astype(np.float64).reshape(-1, n) ** 2, axis=1) + 1e-12
    return float(10 * np.log10(power[-1] / np.median(power)))


def _plot(levels: dict[str, np.ndarray], frames: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True, gridspec_kw={"width_ratios": [1, 2]})
    spans = (range(0, 2 * HEAD), range(frames - 2 * TAIL, frames))
    for ax, span, title in zip(axes, spans, ("the window's start", "the window's end")):
        for name, level in levels.items():
            ax.plot(list(span), level[list(span)], marker=".", label=name)
        ax.set_title(title)
        ax.set_xlabel("mel frame")
    axes[0].set_ylabel("mean normalised mel (median over waves)")
    axes[1].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
