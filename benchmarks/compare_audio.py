"""How far one set of generated sounds is from another: two folders of equally named audio files.

For a change that should not change the sound (another vocoder, fewer sampler steps, another precision), run
`action2sound evaluate` twice with the same clips and seeds, once unchanged and once changed, then

    .venv/bin/python benchmarks/compare_audio.py REPORT_UNCHANGED/audio REPORT_CHANGED/audio --pattern '*_s*.wav'

prints, over the files both folders hold, the mean multi-resolution STFT distance of each changed file to its
unchanged twin (bench_vocoder's definition), the aisfx FAD between the two sets, and for scale the same two
numbers between the unchanged outputs and the clips' ground truth (`*_gt.wav`) when the folder has it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_vocoder import mr_stft_distance

from action2sound import media
from action2sound.evaluation.embedders import AisfxEmbedder, embed_waves
from action2sound.evaluation.fad import fad


def read(paths: list[Path], rate: int) -> list[np.ndarray]:
    return [media.read_audio_file(p, rate).astype(np.float32) for p in paths]


def embed(embedder, waves: list[np.ndarray], rate: int) -> np.ndarray:
    return np.concatenate(embed_waves(embedder, waves, rate))


def distances(a: list[np.ndarray], b: list[np.ndarray], ea: np.ndarray, eb: np.ndarray) -> tuple[float, float]:
    """(mean MR-STFT of a to b pairwise, FAD between the sets' embeddings ea and eb)."""
    n = [min(x.size, y.size) for x, y in zip(a, b)]
    mr = float(np.mean([mr_stft_distance(x[:k], y[:k]) for x, y, k in zip(a, b, n)]))
    return mr, float(fad(eb, ea))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("unchanged", type=Path, help="folder of the unchanged pipeline's outputs")
    ap.add_argument("changed", type=Path, help="folder of the changed pipeline's outputs (same file names)")
    ap.add_argument("--pattern", default="*_s*.wav", help="which files (default: evaluate's generated ones)")
    ap.add_argument("--rate", type=int, default=22050, help="sample rate to compare at (default 22,050 Hz)")
    args = ap.parse_args()
    names = sorted(p.name for p in args.unchanged.glob(args.pattern) if (args.changed / p.name).is_file())
    if not names:
        raise SystemExit(f"no files matching {args.pattern} in both {args.unchanged} and {args.changed}")
    embedder = AisfxEmbedder()
    ref = read([args.unchanged / n for n in names], args.rate)
    out = read([args.changed / n for n in names], args.rate)
    ref_emb = embed(embedder, ref, args.rate)  # once, for both comparisons
    mr, fd = distances(out, ref, embed(embedder, out, args.rate), ref_emb)
    print(f"{len(names)} files: changed vs unchanged: MR-STFT {mr:.4f}, aisfx FAD {fd:.4f}")
    gts = [args.unchanged / f"{n.rsplit('_s', 1)[0]}_gt.wav" for n in names]
    if all(g.is_file() for g in gts):
        truth = read(gts, args.rate)
        mr_gt, fd_gt = distances(ref, truth, ref_emb, embed(embedder, truth, args.rate))
        print(f"for scale, unchanged vs ground truth: MR-STFT {mr_gt:.4f}, aisfx FAD {fd_gt:.4f}")


if __name__ == "__main__":
    main()
