"""Where the event kind is lost: in the generated contacts, or already in what the model sees of the video.

    .venv/bin/python benchmarks/kind_trace.py --bench BENCH --runs EVAL [EVAL ...]   # outputs of `evaluate` runs
    .venv/bin/python benchmarks/kind_trace.py --bench BENCH --probe [--model DIR]     # the video side

`--runs`: for every visible contact in every output of each `evaluate` run (and in its ground truth), the rank of
the true kind among the kind classifier's centroids (0 = its first choice; the classifier is the evaluation's,
fitted on the benchmark's clean training stems): top-1 / 3 / 5 and the median rank, beside chance; and how far the
output's level rises over the contact's first 0.2 s against the 0.2 s before it (does it sound at the contact at
all). A top-k below chance with a rise near the ground truth's means the contacts sound, but not like their kind.

`--probe`: a linear classifier (multinomial logistic regression, weight decay) from what the model sees of the video
to the kind of each visible contact, fitted on the benchmark's train clips and scored on its test clips (other
episodes), at four weight decays: the video condition of the diffusion model at the contact's frame (the AV
tower's per-frame tokens), the clip's retrieval embedding, and the frame itself as an 8x smaller colour thumbnail.
If none beats chance on the test episodes, a model conditioned on these features has nothing that names the struck
object's kind on episodes it was not trained on.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from action2sound.benchmark.groundtruth import load_clip_groundtruth
from action2sound.data.readers import read_ego4d_sounds
from action2sound.errors import Action2SoundError
from action2sound.evaluation import benchmark_metrics as bm
from action2sound.evaluation.measure import fit_kind_classifier
from action2sound.evaluation.clips import EvalClip
from action2sound.media import read_audio_file

RISE_S = 0.2
DECAYS = (0.01, 1.0, 10.0, 100.0)  # the probe's weight decays (AdamW, lr 1e-2, 500 full-batch steps)


def _classifier(bench: Path) -> bm.KindClassifier:
    table, _ = read_ego4d_sounds(bench / "train.tsv", bench / "clips", split="train", check_files=False)
    first = next(iter(table))
    clf = fit_kind_classifier([EvalClip(first, bench / "groundtruth" / first.clip_id)])
    if clf is None:
        raise Action2SoundError(f"{bench}: its train clips hold fewer than two kinds of visible contact")
    return clf


def true_kind_ranks(clf: bm.KindClassifier, pairs: list[tuple[np.ndarray, str]], sr: int) -> list[int]:
    """For each (segment, true kind): how many kinds' centroids lie nearer than the true kind's (0 = correct)."""
    z = (np.stack([bm.kind_features(s, sr) for s, _ in pairs]) - clf.mean) / clf.std
    d = ((z[:, None, :] - clf.centroids[None]) ** 2).sum(-1)
    return [int((row < row[clf.kinds.index(kind)]).sum()) for (_, kind), row in zip(pairs, d)]


def rise_db(wave: np.ndarray, i: int, n: int) -> float | None:
    """Level of wave[i : i + n] over wave[i - n : i] in dB; None where either span leaves the wave."""
    if i - n < 0 or i + n > wave.size:
        return None
    after = float(np.mean(np.square(wave[i : i + n], dtype=np.float64))) + 1e-12
    before = float(np.mean(np.square(wave[i - n : i], dtype=np.float64))) + 1e-12
    return 10.0 * math.log10(after / before)


def trace_runs(bench: Path, runs: list[Path]) -> None:
    clf = _classifier(bench)
    k = len(clf.kinds)
    print(f"{len(clf.kinds)} kinds; chance top-1 {1 / k:.3f}, top-3 {3 / k:.3f}, top-5 {5 / k:.3f}, "
          f"median rank {(k - 1) / 2:.1f}")
    print(f"{'run':24s} {'output':12s} {'contacts':>8s} {'top-1':>6s} {'top-3':>6s} {'top-5':>6s} {'rank':>5s} "
          f"{'rise dB':>8s} {'> 3 dB':>7s}")
    for run in runs:
        records = run / "records.jsonl"
        if not records.is_file():
            raise Action2SoundError(f"{run}: no records.jsonl; pass the --out folder of an `evaluate` run")
        ranks: dict[str, list[int]] = {}
        rises: dict[str, list[float]] = {}
        for line in records.read_text().splitlines():
            r = json.loads(line)
            if not r.get("audio") or not r.get("clip_id"):
                continue
            folder = bench / "groundtruth" / r["clip_id"]
            if not (folder / "events.json").is_file():
                continue
            gt = load_clip_groundtruth(folder)
            wave = read_audio_file(run / r["audio"], gt.sample_rate)
            kind = "groundtruth" if r.get("output") == "groundtruth" else str(r.get("output", "model"))
            pairs = bm.event_segments(wave, gt.sample_rate, gt.events)
            if pairs:
                ranks.setdefault(kind, []).extend(true_kind_ranks(clf, pairs, gt.sample_rate))
            n = int(RISE_S * gt.sample_rate)
            for e in gt.events:
                if e.get("onscreen"):
                    rise = rise_db(wave, int(round(e["time"] * gt.sample_rate)), n)
                    if rise is not None:
                        rises.setdefault(kind, []).append(rise)
        for kind, rk in ranks.items():
            a, up = np.array(rk), np.array(rises.get(kind, [np.nan]))
            print(f"{run.name[:24]:24s} {kind[:12]:12s} {a.size:8d} {np.mean(a < 1):6.3f} {np.mean(a < 3):6.3f} "
                  f"{np.mean(a < 5):6.3f} {np.median(a):5.1f} {np.nanmedian(up):8.1f} {np.mean(up > 3):7.2f}")


def _contacts(bench: Path, split: str, pipe) -> tuple[dict[str, np.ndarray], np.ndarray]:
    from action2sound.data.store import decode_clip

    table, _ = read_ego4d_sounds(bench / f"{split}.tsv", bench / "clips", split=split, check_files=False)
    feats: dict[str, list[np.ndarray]] = {"video condition (frame tokens)": [], "retrieval embedding": [],
                                          "colour thumbnail": []}
    labels: list[str] = []
    for clip in table:
        folder = bench / "groundtruth" / clip.clip_id
        if not (folder / "events.json").is_file():
            continue
        events = [e for e in load_clip_groundtruth(folder).events
                  if e.get("onscreen") and 0.0 <= e["time"] < clip.duration]
        if not events:
            continue
        frames = decode_clip(clip, pipe.preset, frames=True, audio=False)["frames"]  # uint8 [T, S, S, 3]
        with torch.no_grad():
            tokens, emb = pipe.av.encode_frames(torch.from_numpy(frames)[None].to(pipe.device))
        t_count = frames.shape[0]
        for e in events:
            t = min(t_count - 1, int(e["time"] / clip.duration * t_count))
            image = torch.from_numpy(frames[t]).permute(2, 0, 1).float()[None] / 255.0
            feats["video condition (frame tokens)"].append(tokens[0, t].float().cpu().numpy())
            feats["retrieval embedding"].append(emb[0].cpu().numpy())
            feats["colour thumbnail"].append(torch.nn.functional.avg_pool2d(image, 8).flatten().numpy())
            labels.append(str(e["kind"]))
    return {k: np.stack(v) for k, v in feats.items()}, np.array(labels)


def _logistic(x: np.ndarray, y: np.ndarray, classes: list[str], steps: int = 500,
              weight_decay: float = 1e-2) -> torch.nn.Linear:
    """Multinomial logistic regression on standardised features (full batch, AdamW)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(x.shape[1], len(classes))
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-2, weight_decay=weight_decay)
    xt = torch.from_numpy(x).float()
    yt = torch.tensor([classes.index(v) for v in y])
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(xt), yt).backward()
        opt.step()
    return lin


def probe(bench: Path, model: str | None) -> None:
    from action2sound.pipeline import load_pipeline
    from action2sound.weights import default_model_dir

    pipe = load_pipeline(model or default_model_dir(), device="cpu")
    xtr, ytr = _contacts(bench, "train", pipe)
    xte, yte = _contacts(bench, "test", pipe)
    classes = sorted(set(ytr.tolist()))
    majority = max(float(np.mean(yte == c)) for c in classes)
    print(f"contacts: {len(ytr)} train, {len(yte)} test; {len(classes)} kinds; chance {1 / len(classes):.3f}, "
          f"the test's commonest kind {majority:.3f}")
    print(f"{'features':32s} {'dims':>5s}  train / test accuracy at weight decay " + ", ".join(map(str, DECAYS)))
    for name, x in xtr.items():
        mean, std = x.mean(0), x.std(0) + 1e-6
        scores = []
        for wd in DECAYS:
            lin = _logistic((x - mean) / std, ytr, classes, weight_decay=wd)
            with torch.no_grad():
                scores.append([float(np.mean(np.array(classes)[lin(torch.from_numpy((f - mean) / std).float())
                                                            .argmax(-1).numpy()] == y))
                               for f, y in ((x, ytr), (xte[name], yte))])
        print(f"{name:32s} {x.shape[1]:5d}  " + "  ".join(f"{a:.2f} / {b:.3f}" for a, b in scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, type=Path, help="the benchmark folder the runs scored")
    ap.add_argument("--runs", nargs="*", type=Path, default=[], help="`evaluate` output folders")
    ap.add_argument("--probe", action="store_true", help="probe the video side for the kind")
    ap.add_argument("--model", help="model directory for --probe (default: the embedded model)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if not (a.bench / "benchmark.json").is_file():
        raise SystemExit(f"{a.bench}: not a benchmark folder (no benchmark.json); pass the folder "
                         "`action2sound data benchmark` wrote")
    if not a.runs and not a.probe:
        raise SystemExit("nothing to do: pass --runs EVAL... and/or --probe")
    try:
        if a.runs:
            trace_runs(a.bench, a.runs)
        if a.probe:
            probe(a.bench, a.model)
    except Action2SoundError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
