"""How well a briefly trained sync encoder measures audio-visual offsets on the benchmark, and at what CPU cost.

Trains the sync stream's encoder (training/sync_encoder.py, offset contrast) on a benchmark's train clips for
`--steps` batches, then, on its test clips (held-out episodes), delays the ground-truth audio by known amounts
(the episode's sound read from start - delay) and reports how well `SyncEncoder.estimate_offset` recovers them:

    .venv/bin/action2sound data benchmark bench/ --episodes 8 --seed 0 --size 64
    .venv/bin/python benchmarks/bench_sync_encoder.py bench/ --preset small --steps 300

For each delay: the median |estimate - delay| (ms), the share within half a column and within one column, and
for delay 0 the DeSync-like median |offset|. Clips with no visible contact in the centre crop carry no timing;
they are reported apart (`with contacts` / all).

With an onset head (sync_stream.onset_weight > 0), also how well the video alone says when the action sounds:
per latent column between the edge margins, the correlation of the head's logit with the rise of the
episode's action track (`onset_r_action`) and of the clip's mixture (`onset_r_mix`), and the average precision
of the logits for the columns where the action track rises by more than half its clip's largest rise
(`onset_ap_action`, beside `onset_base_rate`, the AP of a guess).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from action2sound.config import override, preset
from action2sound.evaluation.benchmark_metrics import median_abs_offset_ms, visible_contacts
from action2sound.data import load_clip_table
from action2sound.training.data import StageData
from action2sound.training.sync_encoder import sync_clip_dataset, SyncEncoderStage
from action2sound.weights import load_sync_encoder

DELAYS_S = (-0.5, -0.3, 0.0, 0.3, 0.5)


def delayed_mels(table, p, delay_s: float, bench: Path) -> torch.Tensor:
    """Normalised mels [B, n_mels, frames] of each clip's audio delay_s late: the episode's own sound from
    start - delay_s (so the window holds real sound throughout, as a late soundtrack would).

    Read from the long episode (bench/episodes/<video>.mp4 at the clip's time in it): a clip file holds only its
    own 3 s, so reading it from start - delay_s < 0 would give the clip undelayed (a first version did that,
    and scored every positive delay as "0 ms").
    """
    from action2sound import media
    from action2sound.mel import fit_wave, wave_to_mel

    a = p.audio
    mels = []
    for c in table:
        episode = bench / "episodes" / f"{c.video_id}.mp4"
        if not episode.is_file():
            raise SystemExit(f"{episode} is missing: the delayed audio is read from the benchmark's long episodes")
        start = c.video_start - delay_s
        wave = media.read_audio(str(episode), max(0.0, start), c.duration, a.sample_rate)
        if start < 0:  # the episode had not begun: silence first
            wave = np.concatenate([np.zeros(int(round(-start * a.sample_rate)), wave.dtype), wave])
        mels.append(wave_to_mel(fit_wave(wave, a), a))
    return torch.from_numpy(np.stack(mels))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], dest="overrides")
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    ap.add_argument("--save", type=Path, default=None, help="save the trained encoder's state dict here")
    ap.add_argument("--model", type=Path, default=None,
                    help="measure the sync encoder of this model directory or run instead of training one")
    args = ap.parse_args()
    torch.set_num_threads(1)

    p = override(preset(args.preset), args.overrides)
    test_t = load_clip_table(args.bench / "test.tsv")
    test_set = sync_clip_dataset(test_t, p, cache_bytes=2 << 30)
    test = default_collate([test_set[i] for i in range(len(test_set))])
    if args.model is not None:
        enc, _ = load_sync_encoder(args.model)
        if enc is None:
            raise SystemExit(f"{args.model} has no sync encoder")
        measure(args, p, enc.eval(), test_t, test, {"model": str(args.model), "test_clips": len(test_set)})
        return
    train_t = load_clip_table(args.bench / "train.tsv")
    t0 = time.process_time()
    train_set = sync_clip_dataset(train_t, p, cache_bytes=2 << 30)
    for i in range(len(train_set)):  # decode once (the cache), so that the training time below is training
        train_set[i]
    decode_cpu = time.process_time() - t0

    cfg = p.train.sync_encoder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        stage = SyncEncoderStage(p, cfg, args.seed, len(train_set))
    dm = StageData(train_set, None, cfg.batch_size, args.steps, args.seed, groups=train_set.video_codes,
                   group_size=1)
    trainer = L.Trainer(accelerator="cpu", max_steps=args.steps, max_epochs=-1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        gradient_clip_val=cfg.grad_clip or None, use_distributed_sampler=False,
                        limit_val_batches=0, num_sanity_val_steps=0)
    t1, w1 = time.process_time(), time.perf_counter()
    trainer.fit(stage, datamodule=dm)
    train_cpu, train_wall = time.process_time() - t1, time.perf_counter() - w1

    final_loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
    enc = stage.model.eval()
    if args.save:
        torch.save(enc.state_dict(), args.save)
    measure(args, p, enc, test_t, test, {
        "preset": p.name, "steps": args.steps, "train_clips": len(train_set), "test_clips": len(test_set),
        "decode_cpu_s": decode_cpu, "train_cpu_s": train_cpu, "final_train_loss": final_loss,
        "train_wall_s": train_wall})


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """AP of ranking by `scores` for boolean `positive` (mean precision at each positive's rank)."""
    hits = positive[np.argsort(-scores, kind="stable")]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float((precision * hits).sum() / max(1, hits.sum()))


def onset_reading(enc, p, test_t, test, bench: Path) -> dict:
    """How well the onset head, from the video alone, finds the columns where the action track rises."""
    from action2sound import media
    from action2sound.mel import fit_wave, wave_to_mel

    a = p.audio
    action = torch.from_numpy(np.stack([wave_to_mel(fit_wave(media.read_audio(
        str(bench / "episodes" / f"{c.video_id}.action.wav"), c.video_start, c.duration, a.sample_rate), a), a)
        for c in test_t]))
    with torch.no_grad():
        logits = enc.onset_logits(enc.video_features(test["sync_frames"]))[:, enc.lo:enc.hi].flatten()
        rise_action = enc.onset_target(action)[:, enc.lo:enc.hi].flatten()
        rise_mix = enc.onset_target(test["mel"])[:, enc.lo:enc.hi].flatten()
    positive = (rise_action > 0.5).numpy()
    return {"onset_r_action": float(np.corrcoef(logits, rise_action)[0, 1]),
            "onset_r_mix": float(np.corrcoef(logits, rise_mix)[0, 1]),
            "onset_ap_action": average_precision(logits.numpy(), positive), "onset_base_rate": float(positive.mean())}


def measure(args, p, enc, test_t, test, results: dict) -> None:
    """Delay the held-out clips' audio by each of DELAYS_S and report how well the encoder finds the delay."""
    period = enc.period
    duration = p.audio.duration
    # A clip carries timing only where a visible contact falls inside the estimator's centre crop.
    s = p.sync_stream.max_shift_columns
    lo, hi = (enc.lo + s) * period, (enc.hi - s) * period
    events = [json.loads((args.bench / "groundtruth" / c.clip_id / "events.json").read_text()) for c in test_t]
    informative = np.array([any(lo <= t < hi for t in visible_contacts(e, duration)) for e in events])
    results.update({"test_clips_with_contacts": int(informative.sum()), "column_ms": period * 1000, "delays": {}})
    t2 = time.process_time()
    with torch.no_grad():
        for d in DELAYS_S:
            mel = test["mel"] if d == 0.0 else delayed_mels(test_t, p, d, args.bench)
            est = enc.estimate_offset(test["sync_frames"], mel).numpy()
            err = np.abs(est - d)
            row = {}
            for name, m in (("all", np.ones_like(informative)), ("with_contacts", informative)):
                e = err[m]
                row[name] = {"median_abs_error_ms": float(np.median(e) * 1000),
                             "within_half_column": float(np.mean(e <= period / 2)),
                             "within_one_column": float(np.mean(e <= period)),
                             "n": int(m.sum())}
            if d == 0.0:
                row["desync_median_abs_offset_ms"] = median_abs_offset_ms(est[informative])
            results["delays"][f"{d:+.1f}"] = row
    if enc.onset is not None:
        results.update(onset_reading(enc, p, test_t, test, args.bench))
    results["measure_cpu_s"] = time.process_time() - t2
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
