"""Writing a benchmark to disk: episode media and stems, clip files, ground-truth folders, TSVs, benchmark.json.

Stems are 32-bit float WAV, the same length as the clip, and mix.wav == (action + ambient) + offscreen
exactly, summed in float32 in that order (so re-summing the read stems reproduces it bit for bit). The mp4's
sound is the same mix after AAC encoding (lossy: compare against mix.wav, not bit for bit). The layout is in
`build.py`'s docstring.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile

from ..errors import Action2SoundError
from ..media import write_video
from .clips import ClipWindow
from .config import ACTIONS, EGO4D_COLUMNS, FLAG_COLUMNS, NARRATION_SOURCE, STEMS, BenchmarkConfig, clip_id
from .episode import Episode, Event
from .planning import Contact

# The format names the layout: a v1 benchmark.json has no "layout" setting (its clips are centred), so a
# centred build today writes exactly what v1 wrote.
FORMATS = {"centred": "action2sound ambient-aware benchmark v1", "v2": "action2sound ambient-aware benchmark v2"}
VERBS = {"hit": "hits", "scrape": "scrapes", "drop": "drops", "shake": "shakes"}
# What the narration calls an object of each procedural material.
NOUNS = {"wood": ("wooden", "board"), "metal": ("metal", "pan"), "glass": ("glass", "jar"),
         "ceramic": ("ceramic", "bowl"), "plastic": ("plastic", "box")}


def narration(action: str, kind: str) -> tuple[str, str, str]:
    """(clip_text, verb, noun) in the Ego4D style, e.g. ("#C C hits the metal pan", "hit", "pan")."""
    adj, noun = NOUNS.get(kind, ("", kind.replace("_", " ").replace("-", " ")))
    thing = f"{adj} {noun}".strip()
    return f"#C C {VERBS[action]} the {thing}", action, noun


def _event_json(e: Event, frame0: int, sample0: int, sr: int) -> dict:
    return {"time": round((e.sample - sample0) / sr, 6), "frame": e.frame - frame0, "sample": e.sample - sample0,
            "kind": e.kind, "action": e.action, "onscreen": e.onscreen, "gain": round(e.gain, 6),
            "duration": round(e.duration, 6), "object": e.object}


def _write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    soundfile.write(str(path), np.asarray(x, dtype=np.float32), sr, subtype="FLOAT")


def ambient_record(ep: Episode) -> dict:
    """The episode's ambient as written to events.json, clip.json and benchmark.json."""
    return {"kind": ep.ambient_kind, "level_db": round(ep.ambient_db, 3), "drift_db": round(ep.ambient_drift_db, 3),
            "quiet": ep.quiet, "flags": ep.flags}


def write_episode_media(out: Path, ep: Episode, frames: np.ndarray, mix: np.ndarray, cfg: BenchmarkConfig) -> None:
    """episodes/<uid>.mp4, its stems and mix as float WAV, and the scene's trajectories (.scene.npz)."""
    fps, sr = cfg.fps, cfg.sample_rate
    stem = out / "episodes" / ep.uid
    write_video(stem.with_suffix(".mp4"), frames, fps, mix, sr)
    for name in STEMS:
        _write_wav(stem.parent / f"{ep.uid}.{name}.wav", ep.stems[name], sr)
    _write_wav(stem.parent / f"{ep.uid}.mix.wav", mix, sr)
    tr = ep.trajectory
    np.savez_compressed(stem.parent / f"{ep.uid}.scene.npz", camera=tr.camera, hand=tr.hand, objects=tr.objects,
                        held=tr.held)


def write_clip(out: Path, ep: Episode, frames: np.ndarray, mix: np.ndarray, window: ClipWindow, split: str,
               cfg: BenchmarkConfig) -> list[str]:
    """clips/<uid>/<clip_id>.mp4 and groundtruth/<clip_id>/ for one window -> its Ego4D-Sounds TSV row."""
    fps, sr = cfg.fps, cfg.sample_rate
    f0 = window.first_frame
    s0 = window.first_sample(cfg)
    s1 = s0 + cfg.clip_samples
    cid = clip_id(ep.uid, window.index)
    a = window.action
    text, verb, noun = narration(a.action, ep.objects[a.object].kind)
    write_video(out / "clips" / ep.uid / f"{cid}.mp4", frames[f0 : f0 + cfg.clip_frames], fps, mix[s0:s1], sr)
    gt = out / "groundtruth" / cid
    gt.mkdir(parents=True, exist_ok=True)
    for name in STEMS:
        _write_wav(gt / f"{name}.wav", ep.stems[name][s0:s1], sr)
    _write_wav(gt / "mix.wav", mix[s0:s1], sr)
    in_clip = [_event_json(e, f0, s0, sr) for e in ep.events
               if e.sample < s1 and e.sample + int(e.sound_seconds * sr) > s0]
    (gt / "events.json").write_text(json.dumps(in_clip, indent=1))
    start = f0 / fps
    (gt / "clip.json").write_text(json.dumps({
        "clip_id": cid, "video_uid": ep.uid, "split": split, "start": round(start, 6),
        "end": round(start + cfg.clip_seconds, 6), "first_frame": f0, "first_sample": s0, "fps": fps,
        "sample_rate": sr, "narration": text, "action": a.action, "object_kind": ep.objects[a.object].kind,
        "ambient": ambient_record(ep),
        "mix": "mix.wav == (action.wav + ambient.wav) + offscreen.wav, summed in float32",
    }, indent=1))
    # The reader places a clip file at narration_time +- clip_seconds / 2 (as Ego4D-Sounds' extraction does).
    t_narr = start + cfg.clip_seconds / 2
    return [ep.uid, f"{ep.n_frames / fps:.6f}", NARRATION_SOURCE, str(window.index), f"{t_narr:.6f}", f"{start:.6f}",
            f"{start + cfg.clip_seconds:.6f}", text, f"['{verb}']", f"['{noun}']", "1", f"{ep.uid}/{cid}.mp4",
            *(str(ep.flags[c]) for c in FLAG_COLUMNS)]


def write_episode_events(out: Path, ep: Episode, split: str, contacts: list[Contact], num_samples: int,
                         cfg: BenchmarkConfig) -> None:
    """episodes/<uid>.events.json: objects, narrated actions, every event, and the renderer's contacts."""
    fps, sr = cfg.fps, cfg.sample_rate
    (out / "episodes" / f"{ep.uid}.events.json").write_text(json.dumps({
        "video_uid": ep.uid, "split": split, "duration": ep.n_frames / fps, "n_frames": ep.n_frames, "fps": fps,
        "sample_rate": sr, "num_samples": num_samples, "surface": ep.surface, "ambient": ambient_record(ep),
        "stem_scale": ep.scale,
        "objects": [asdict(o) for o in ep.objects],
        "actions": [{"index": a.index, "action": a.action, "object": a.object, "frame": a.frame,
                     "time": round(a.frame / fps, 6), "events": list(a.events), "clip_id": clip_id(ep.uid, a.index)}
                    for a in ep.actions],
        "events": [_event_json(e, 0, 0, sr) for e in ep.events],
        "contacts": [asdict(c) for c in contacts],
    }, indent=1))


def write_tsvs(out: Path, rows: dict[str, list[list[str]]]) -> None:
    """train.tsv, test.tsv and all.tsv in the 16 Ego4D-Sounds columns, sorted by (video, narration index)."""
    for name, data in (("train", rows["train"]), ("test", rows["test"]), ("all", rows["train"] + rows["test"])):
        with open(out / f"{name}.tsv", "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(EGO4D_COLUMNS)
            w.writerows(sorted(data, key=lambda r: (r[0], int(r[3]))))


def read_config(bench: Path) -> BenchmarkConfig:
    """The settings a benchmark folder was built with, from its benchmark.json (`write_metadata`'s inverse: a v1
    file names no layout, so it is `centred`); with them `make_episode` rebuilds any of its episodes."""
    path = Path(bench) / "benchmark.json"
    if not path.is_file():
        raise Action2SoundError(f"{path}: not found; pass a benchmark folder written by `action2sound data benchmark`")
    meta = json.loads(path.read_text())
    settings = {"layout": "centred", **meta["settings"]}
    settings["episode_seconds"] = tuple(settings["episode_seconds"])
    return BenchmarkConfig(seed=int(meta["seed"]), **settings)


def write_metadata(out: Path, cfg: BenchmarkConfig, bank, episodes: list[dict]) -> None:
    """benchmark.json: the format (v1 = centred, v2), the seed and settings, the bank, its licence, every episode."""
    (out / "benchmark.json").write_text(json.dumps({
        "format": FORMATS[cfg.layout],
        "seed": cfg.seed,
        "settings": {k: v for k, v in asdict(cfg).items() if k != "seed" and not (k == "layout" and v == "centred")},
        "bank": bank.name, "licence": bank.licence,
        "kinds": list(bank.kinds), "actions": list(ACTIONS), "ambient_kinds": list(bank.ambient_kinds),
        "clip_root": "clips", "stems": list(STEMS), "stem_format": "32-bit float WAV, mono",
        "mix": "mix == (action + ambient) + offscreen, summed in float32 (exact); the mp4 sound is that mix in AAC",
        "event_sample": "round(frame * sample_rate / fps)",
        "episodes": episodes,
    }, indent=1))
