"""Where the event kind is lost: in the generated contacts, or already in what the model sees of the video.

    .venv/bin/python benchmarks/kind_trace.py --bench BENCH --runs EVAL [EVAL ...]   # outputs of `evaluate` runs
    .venv/bin/python benchmarks/kind_trace.py --bench BENCH --probe [--model DIR]     # the video side

`--runs`: for every visible contact in every output of each `evaluate` run (and in its ground truth), the rank of
the true kind among the kind classifier's centroids (0 = its first choice; the classifier is the evaluation's,
fitted on the benchmark's clean training stems): top-1 / 3 / 5 and the median rank, beside chance; and how far the
output's level rises over the contact's first 0.2 s against the 0.2 s before it (does it sound at the contact at
all). A top-k below chance with a rise near the ground truth's means the contacts sound, but not like their kind.

`--probe`: a linear classifier (multinomial logistic regression, at four weight decays) to the kind of each visible
contact, fitted on the benchmark's train episodes and scored on its test episodes. First from what the model sees of
the video: the diffusion model's video condition at the contact's frame (the AV tower's per-frame tokens), the
clip's retrieval embedding, the frame as 8x smaller colours, the sync stream's features at the contact's column, its
own 32 px frames where they move most. Then from what there is to see: the episodes rebuilt from benchmark.json
(checked against their events.json), a 32 px crop at the struck object (its position taken from the rebuilt scene:
an oracle no model has), the same place at the sync stream's resolution, a crop at the fingertip, a crop where the
camera-compensated frame difference is largest (no oracle), and the whole frame. If the crop names the kind on
unseen episodes and the model's features do not, the kind is on screen but the video condition does not isolate it.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from action2sound.models.sync_stream import appearance_features, camera_compensated_difference

APPEARANCE_SIZE = 128  # --probe: the appearance's frame size for a model without it (session 13's experiment)

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
    d = clf.distances([s for s, _ in pairs], sr)
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
    print(f"{k} kinds; chance top-1 {1 / k:.3f}, top-3 {3 / k:.3f}, top-5 {5 / k:.3f}, "
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
                                          "the frame as 8x smaller colours": []}
    enc = pipe.sync_encoder
    preset = pipe.preset
    if enc is not None:
        feats["sync stream at the contact's column"] = []
        feats["sync stream's frames: 8 px where they move most"] = []
        feats["the stream's appearance at the contact's column"] = []
        # The stream's frames at both sizes from one decoding pass, as the store reads them.
        preset = dataclasses.replace(preset, sync_stream=dataclasses.replace(
            enc.cfg, appearance_size=enc.cfg.appearance_size or APPEARANCE_SIZE))
    labels: list[str] = []
    for clip in table:
        folder = bench / "groundtruth" / clip.clip_id
        if not (folder / "events.json").is_file():
            continue
        events = [e for e in load_clip_groundtruth(folder).events
                  if e.get("onscreen") and 0.0 <= e["time"] < clip.duration]
        if not events:
            continue
        decoded = decode_clip(clip, preset, frames=True, audio=False, sync=enc is not None)
        frames = decoded["frames"]  # uint8 [T, S, S, 3]
        with torch.no_grad():
            tokens, emb = pipe.av.encode_frames(torch.from_numpy(frames)[None].to(pipe.device))
        t_count = frames.shape[0]
        if enc is not None:
            dense, detail = decoded["sync_frames"], decoded["sync_detail"]
            with torch.no_grad():
                stream = enc.video_features(torch.from_numpy(dense)[None].to(pipe.device))[0].float().cpu().numpy()
                appearance = appearance_features(torch.from_numpy(detail)[None], enc.per_column)[0].numpy()
        for e in events:
            t = min(t_count - 1, int(e["time"] / clip.duration * t_count))
            image = torch.from_numpy(frames[t]).permute(2, 0, 1).float() / 255.0
            feats["video condition (frame tokens)"].append(tokens[0, t].float().cpu().numpy())
            feats["retrieval embedding"].append(emb[0].cpu().numpy())
            feats["the frame as 8x smaller colours"].append(_colours(image, image.shape[-1] // 8))
            if enc is not None:  # the column the contact starts in
                j = min(stream.shape[0] - 1, int(e["time"] / clip.duration * stream.shape[0]))
                feats["sync stream at the contact's column"].append(stream[j])
                feats["the stream's appearance at the contact's column"].append(appearance[j])
                feats["sync stream's frames: 8 px where they move most"].append(
                    _at_motion(dense, int(np.searchsorted(enc.frame_times, e["time"], side="right")) - 1, 4, 8))
            labels.append(str(e["kind"]))
    return {k: np.stack(v) for k, v in feats.items()}, np.array(labels)


def _crop(frame: torch.Tensor, x: float, y: float, half: int) -> torch.Tensor:
    """The 2*half px square of a frame [3, S, S] around (x, y), moved inside the frame -> [3, 2*half, 2*half]."""
    size = frame.shape[-1]
    x, y = (int(np.clip(round(float(v)), half, size - half)) for v in (x, y))
    return frame[:, y - half : y + half, x - half : x + half]


def _colours(crop: torch.Tensor, side: int) -> np.ndarray:
    """A crop [3, H, W] as side x side mean colours -> [3 * side * side]."""
    return torch.nn.functional.adaptive_avg_pool2d(crop[None], side).flatten().numpy()


def _at_motion(frames: np.ndarray, k: int, half: int, side: int) -> np.ndarray:
    """The 2*half px square of frame k (of uint8 frames [N, S, S, 3]) where the camera-compensated difference of
    its last 3 frames is largest (box-filtered over the square), as side x side colours: no oracle, what a model
    could compute -> [3 * side * side]."""
    k = int(np.clip(k, 0, len(frames) - 1))
    size = frames.shape[1]
    x = torch.from_numpy(frames[max(0, k - 3) : k + 1]).permute(0, 3, 1, 2).float() / 255
    my = mx = size // 2
    if x.shape[0] > 1:
        d = camera_compensated_difference(x[1:][None], x[:-1][None])[0].abs().sum(dim=(0, 1))
        m = torch.nn.functional.avg_pool2d(d[None, None], 2 * half + 1, stride=1, padding=half)[0, 0]
        m[:half], m[-half:], m[:, :half], m[:, -half:] = 0, 0, 0, 0
        if float(m.max()) > 0:  # nothing moved: the centre
            my, mx = divmod(int(m.argmax()), size)
    return _colours(_crop(x[-1], mx, my, half), side)


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


def _episode_contacts(bench: Path, stream_size: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Every visible contact of every episode, rebuilt from benchmark.json (the builder is deterministic; each
    rebuilt episode's contacts are checked against its events.json): what is there to see at the struck object
    (its position is the rebuilt scene's: an oracle no model has) and in the whole frame -> (features, kinds,
    is-test)."""
    from action2sound.benchmark import (episode_uid, make_episode, open_bank, read_config, render_frames,
                                        test_episodes)

    cfg = read_config(bench)
    bank = open_bank(cfg.bank, cfg.sample_rate)
    test = test_episodes(cfg)
    feats: dict[str, list[np.ndarray]] = {"struck object: 32 px crop as 8 x 8 colours": [],
                                          "struck object: crop's colour mean, std": [],
                                          f"struck object, frame at the sync stream's {stream_size} px": [],
                                          "fingertip: 32 px crop as 8 x 8 colours": [],
                                          "most motion (no oracle): 32 px crop as 8 x 8": [],
                                          "whole frame: 16 x 16 colours": []}
    kinds, is_test = [], []
    half = 16
    for i in range(cfg.episodes):
        ep = make_episode(i, cfg, bank)
        stored = json.loads((bench / "episodes" / f"{episode_uid(cfg.seed, i)}.events.json").read_text())["events"]
        if [(e["frame"], e["kind"]) for e in stored if e["onscreen"]] != \
                [(e.frame, e.kind) for e in ep.events if e.onscreen]:
            raise Action2SoundError(f"{bench}: episode {i} does not rebuild as it was written (another version or "
                                    "another bank); rebuild the benchmark with this version")
        tr = ep.trajectory
        for e in ep.events:
            if not e.onscreen or e.object < 0 or not 0 <= e.frame < ep.n_frames:
                continue
            last = render_frames(ep, max(0, e.frame - 3), e.frame + 1)  # the contact's frame and 3 before
            frame = torch.from_numpy(last[-1]).permute(2, 0, 1).float() / 255
            size = frame.shape[-1]
            x, y = tr.objects[e.object, e.frame, :2] - tr.camera[e.frame]
            crop = _crop(frame, x, y, half)
            feats["struck object: 32 px crop as 8 x 8 colours"].append(_colours(crop, 8))
            feats["struck object: crop's colour mean, std"].append(
                torch.cat([crop.mean((1, 2)), crop.std((1, 2))]).numpy())
            # Where the hand is (what motion could find without the oracle): the crop at the fingertip.
            hx, hy = tr.hand[e.frame, :2] - tr.camera[e.frame]
            feats["fingertip: 32 px crop as 8 x 8 colours"].append(_colours(_crop(frame, hx, hy, half), 8))
            # Without any oracle: where the frame moves most.
            feats["most motion (no oracle): 32 px crop as 8 x 8"].append(_at_motion(last, len(last) - 1, half, 8))
            # The same 32 px of the scene as the sync stream sees it: the frame squashed to stream_size.
            small = torch.nn.functional.interpolate(frame[None], size=(stream_size, stream_size), mode="area")[0]
            scale = stream_size / size
            feats[f"struck object, frame at the sync stream's {stream_size} px"].append(
                _crop(small, x * scale, y * scale, max(1, round(half * scale))).flatten().numpy())
            feats["whole frame: 16 x 16 colours"].append(_colours(frame, 16))
            kinds.append(e.kind)
            is_test.append(i in test)
    return {k: np.stack(v) for k, v in feats.items()}, np.array(kinds), np.array(is_test)


def _print_probe(title: str, xtr: dict[str, np.ndarray], ytr: np.ndarray, xte: dict[str, np.ndarray],
                 yte: np.ndarray) -> None:
    classes = sorted(set(ytr.tolist()))
    majority = max(float(np.mean(yte == c)) for c in classes)
    print(f"{title}: {len(ytr)} train, {len(yte)} test contacts; {len(classes)} kinds; chance {1 / len(classes):.3f}, "
          f"the test's commonest kind {majority:.3f}")
    print(f"{'features':44s} {'dims':>5s}  train / test accuracy at weight decay " + ", ".join(map(str, DECAYS)))
    for name, x in xtr.items():
        mean, std = x.mean(0), x.std(0) + 1e-6
        scores = []
        for wd in DECAYS:
            lin = _logistic((x - mean) / std, ytr, classes, weight_decay=wd)

            def accuracy(f: np.ndarray, y: np.ndarray) -> float:
                with torch.no_grad():
                    pred = lin(torch.from_numpy((f - mean) / std).float()).argmax(-1).numpy()
                return float(np.mean(np.array(classes)[pred] == y))

            scores.append((accuracy(x, ytr), accuracy(xte[name], yte)))
        print(f"{name:44s} {x.shape[1]:5d}  " + "  ".join(f"{a:.2f} / {b:.3f}" for a, b in scores))


def probe(bench: Path, model: str | None) -> None:
    from action2sound.pipeline import load_pipeline
    from action2sound.weights import default_model_dir

    pipe = load_pipeline(model or default_model_dir(), device="cpu")
    xtr, ytr = _contacts(bench, "train", pipe)
    xte, yte = _contacts(bench, "test", pipe)
    _print_probe("what the model sees (clips)", xtr, ytr, xte, yte)
    x, kinds, is_test = _episode_contacts(bench, pipe.preset.sync_stream.size)
    print()
    _print_probe("what there is to see (episodes)", {k: v[~is_test] for k, v in x.items()}, kinds[~is_test],
                 {k: v[is_test] for k, v in x.items()}, kinds[is_test])


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
