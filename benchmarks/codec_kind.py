"""Does a VAE keep the event kind? The kind a benchmark's ground truth keeps through a VAE and the vocoder.

    .venv/bin/python benchmarks/codec_kind.py --bench BENCH                       # the embedded model's VAE
    .venv/bin/python benchmarks/codec_kind.py --bench BENCH --vae none shipped RUN/vae/weights.safetensors

For each VAE (a weights file of `train vae`; `shipped`: the model's own; `none`: no VAE, the ground truth's mel
straight to the vocoder) the test clips' mix and clean action stem are encoded (posterior mean), decoded as the
pipeline decodes (its edge columns), vocoded by the model's vocoder, and scored by the evaluation's event-kind
classifier (fitted on the benchmark's clean training stems). Prints per VAE and stem the kind accuracy over the
visible contacts and the mel L1 of the reconstruction. No latent a diffusion model makes on that VAE can be
expected to keep more kind than its codec does (`evaluate --baseline codec` measures the same for a whole
model), so a VAE meant for a retrained chain can be judged here before any ldm is trained on it
(docs/RESULTS.md, sessions 10 and 15).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from action2sound.benchmark.groundtruth import load_clip_groundtruth
from action2sound.errors import Action2SoundError
from action2sound.evaluation import benchmark_metrics as bm
from action2sound.evaluation.clips import load_eval_clips
from action2sound.evaluation.measure import fit_kind_classifier
from action2sound.media import resample
from action2sound.mel import wave_to_mel
from action2sound.models.vae import encode_mel, latents_to_mels
from action2sound.pipeline import load_pipeline, mels_to_waves
from action2sound.weights import default_model_dir, load_component

STEMS = ("mix", "action")


def codec_kind(pipe, vae, clips, kinds) -> dict[str, tuple[int, int, float]]:
    """-> {stem: (contacts named right, contacts, mean mel L1)} through `vae` (None: the mel as it is)."""
    p = pipe.preset
    hits, total, l1 = dict.fromkeys(STEMS, 0), dict.fromkeys(STEMS, 0), {s: [] for s in STEMS}
    for clip in clips:
        gt = load_clip_groundtruth(clip.groundtruth)
        for stem in STEMS:
            mel = torch.from_numpy(wave_to_mel(resample(getattr(gt, stem), gt.sample_rate, p.audio.sample_rate),
                                               p.audio))[None]  # fitted to one window, padded
            real = mel[..., : p.audio.num_frames]
            with torch.no_grad():
                if vae is None:
                    rec = real
                else:
                    mean, _ = encode_mel(vae, mel)
                    rec = latents_to_mels(vae, mean * vae.config.scaling_factor, p)
                out = mels_to_waves(pipe.vocoder, rec, p)[0]
            l1[stem].append(float((rec - real).abs().mean()))
            h, n = bm.kind_accuracy(kinds, resample(out, p.audio.sample_rate, gt.sample_rate), gt.sample_rate,
                                    gt.events)
            hits[stem], total[stem] = hits[stem] + h, total[stem] + n
    return {s: (hits[s], total[s], float(np.mean(l1[s]))) for s in STEMS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, type=Path, help="a benchmark folder (`data benchmark`)")
    ap.add_argument("--model", type=Path, default=default_model_dir(),
                    help="model directory whose vocoder (and `shipped` VAE) to use (default: embedded)")
    ap.add_argument("--vae", nargs="+", default=["shipped"], help="VAE weights files, `shipped` or `none`")
    ap.add_argument("--limit", type=int, default=42, help="test clips (default 42, as the study)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clips = [c for c in load_eval_clips(args.bench, "test", args.limit) if c.groundtruth is not None]
    if not clips:
        raise SystemExit(f"{args.bench}: no test clips with ground truth; pass a folder `data benchmark` wrote")
    kinds = fit_kind_classifier(clips)
    if kinds is None:
        raise SystemExit(f"{args.bench}: its train clips have fewer than 2 event kinds; no classifier to fit")
    pipe = load_pipeline(args.model, device="cpu")
    named = {"shipped": pipe.vae, "none": None}
    for name in args.vae:
        try:
            vae = named[name] if name in named else load_component(name, "vae")[0]
        except (Action2SoundError, OSError, ValueError) as err:
            raise SystemExit(f"--vae {name}: {err}; pass a `train vae` weights file, `shipped` or `none`") from err
        res = codec_kind(pipe, vae, clips, kinds)
        print(f"{name}: " + "; ".join(f"{s} kind {h}/{n} = {h / max(n, 1):.3f}, mel L1 {l1:.4f}"
                                      for s, (h, n, l1) in res.items()), flush=True)


if __name__ == "__main__":
    main()
