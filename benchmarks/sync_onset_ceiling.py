"""How well the sync stream alone places onsets: its encoder's onset head, peak-picked, against the contacts.

    .venv/bin/python benchmarks/sync_onset_ceiling.py --data runs/default/bench --limit 42

For each benchmark clip the model's sync encoder reads the clip's frames at `sync_frame_times`, its linear
onset head (SyncEncoder.onset_logits) gives a probability per latent column, and every local peak above a
threshold is an onset at its column's centre time. The onsets are scored like generated audio's
(benchmark_metrics.contact_onset_score, ±50 ms against the visible contacts). No diffusion, no audio: what
the stream knows about *when*, the figure the ldm's onset F1 can be compared with (docs/RESULTS.md, session 7:
0.58 at threshold 0.3 for the shipped model, where the ldm reached 0.318 without sync guidance).

With a timbre head (sync_stream.timbre_weight > 0) it also says what the stream knows about *what*: at each
visible contact's column the head's predicted spectral shape is classified by the nearest kind centroid, the
centroids being the mean true shapes (SyncEncoder.timbre_target of the action track) of the benchmark's train
contacts; the same classifier on the test contacts' true shapes is this measure's ceiling, 1 / kinds its chance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from action2sound.benchmark.groundtruth import load_clip_groundtruth
from action2sound.config import preset_from_dict
from action2sound.data.store import decode_clip
from action2sound.errors import Action2SoundError
from action2sound.evaluation import benchmark_metrics as bm
from action2sound.evaluation.clips import load_eval_clips
from action2sound.models.sync_stream import column_times
from action2sound.weights import default_model_dir, load_sync_encoder, read_model_json, read_weights_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_dir()),
                    help="model directory or training run (default: the embedded model)")
    ap.add_argument("--data", required=True, help="a benchmark folder (its test clips and ground truth)")
    ap.add_argument("--limit", type=int, default=42, help="the first N test clips (default 42, the study's)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5])
    args = ap.parse_args()
    enc, _ = load_sync_encoder(args.model)
    if enc is None or enc.onset is None:
        raise SystemExit(f"{args.model}: no sync encoder with an onset head (sync_stream.onset_weight > 0)")
    enc.eval()
    model = Path(args.model)
    preset = preset_from_dict(read_model_json(model)["preset"]) if (model / "model.json").is_file() else \
        read_weights_preset(model / "sync_encoder" / "weights.safetensors", "sync_encoder")  # a training run
    clips = [c for c in load_eval_clips(args.data, limit=args.limit) if c.groundtruth is not None]
    if not clips:
        raise SystemExit(f"{args.data}: no clips with ground truth; pass a benchmark folder")
    centres = column_times(enc.profile, enc.audio.downsample, enc.columns)
    timbre = enc.timbre is not None
    probs, events, seconds, contacts = [], [], [], []
    for item in clips:  # each clip decoded once, its video features computed once, for both heads
        c = item.clip
        d = decode_clip(c, preset, frames=False, audio=timbre, sync=True, onset_track=timbre)  # as training reads
        ev = load_clip_groundtruth(item.groundtruth).events
        with torch.no_grad():
            video = enc.video_features(torch.from_numpy(d["sync_frames"])[None])
            probs.append(torch.sigmoid(enc.onset_logits(video))[0].numpy())
            if timbre:
                contacts += contact_shapes(enc, centres, ev, c.duration, d["onset_mel"],
                                           enc.timbre_prediction(video)[0].numpy())
        events.append(ev)
        seconds.append(c.duration)
    print(f"{len(clips)} clips of {args.data}, sync encoder of {args.model}")
    for thr in args.thresholds:
        hits = n_ref = n_est = 0
        for p, ev, dur in zip(probs, events, seconds):
            peaks = [j for j in range(1, len(p) - 1) if p[j] >= thr and p[j] >= p[j - 1] and p[j] > p[j + 1]]
            s = bm.contact_onset_score([centres[j] for j in peaks if centres[j] < dur], ev, dur)
            hits, n_ref, n_est = hits + s.hits, n_ref + s.n_reference, n_est + s.n_estimated
        f1 = 2 * hits / (n_ref + n_est) if n_ref + n_est else float("nan")
        print(f"threshold {thr:.2f}: onset F1 ±50 ms {f1:.3f} ({hits} hits, {n_ref} contacts, {n_est} onsets)")
    if timbre:
        kind_from_timbre(enc, preset, centres, args.data, contacts)


def contact_shapes(enc, centres: np.ndarray, events: list[dict], duration: float, onset_mel: np.ndarray,
                   pred: np.ndarray | None = None) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(kind, true shape [n_mels], predicted shape or None) of each visible contact inside the clip, at the
    column whose span holds the contact; pred: the timbre head's shapes [W, n_mels] of the clip, if any."""
    with torch.no_grad():
        true = enc.timbre_target(torch.from_numpy(onset_mel)[None])[0][0].numpy()
    out = []
    for e in events:
        if e.get("onscreen") and 0.0 <= e["time"] < duration:  # the visible contacts (bm.visible_contacts)
            j = int(np.argmin(np.abs(centres - e["time"])))
            if enc.lo <= j < enc.hi:
                out.append((str(e["kind"]), true[j], None if pred is None else pred[j]))
    return out


def kind_from_timbre(enc, preset, centres: np.ndarray, data: str, got: list) -> None:
    """Classify the test contacts' predicted (and true) shapes by the nearest kind centroid of the train
    contacts' true shapes; print the accuracies."""
    shapes: dict[str, list[np.ndarray]] = {}
    for item in (c for c in load_eval_clips(data, split="train") if c.groundtruth is not None):
        mel = decode_clip(item.clip, preset, frames=False, audio=True, onset_track=True)["onset_mel"]
        events = load_clip_groundtruth(item.groundtruth).events
        for kind, true, _ in contact_shapes(enc, centres, events, item.clip.duration, mel):
            shapes.setdefault(kind, []).append(true)
    kinds = sorted(shapes)
    centroids = np.stack([np.mean(shapes[k], axis=0) for k in kinds])

    def nearest(x: np.ndarray) -> str:
        return kinds[int(np.argmin(((centroids - x) ** 2).sum(axis=1)))]

    if not got:
        print("no visible contacts in the test clips: no kind measure")
        return
    video = np.mean([nearest(p) == k for k, _, p in got])
    truth = np.mean([nearest(t) == k for k, t, _ in got])
    print(f"kind from the timbre head: {video:.3f} of {len(got)} contacts (the true shapes: {truth:.3f}; "
          f"chance {1 / len(kinds):.3f}, {len(kinds)} kinds from {sum(map(len, shapes.values()))} train contacts)")


if __name__ == "__main__":
    try:
        main()
    except Action2SoundError as err:
        raise SystemExit(f"error: {err}") from None
