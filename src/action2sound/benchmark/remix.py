"""Ambient swaps: training episodes whose ambient only the audio condition can tell.

In a benchmark, every episode has its own scene and its own ambient, so on the training episodes the picture
names the ambient: a model fine-tuned long enough learns "this table → this rain" and stops listening to the
audio condition (docs/RESULTS.md, session 8: control r 0.79 → 0.53 over 3000 more steps). A swap pairs one
training episode's picture, action and off-screen stems with *another* training episode's ambient stem. Its
clips and their same-video neighbours then share the other episode's ambient, so the only way to get the
ambient right is to take it from the condition — the behaviour AV-LDM's audio condition exists for.

`ambient_swaps` writes `<uid>~<partner>.mp4` (the episode's picture, stream-copied, with the remixed track)
into a folder that `data manifest folder` turns into training windows, plus `swaps.json` with each pair.
Only training episodes take part, so no test episode's sound reaches training. Rerunning skips finished files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import soundfile

from ..errors import Action2SoundError
from ..data.store import write_json_atomic
from ..media import mux_audio

SWAPS_JSON = "swaps.json"
SEAM_S = 0.05  # crossfade where a shorter partner's ambient is looped
HEADROOM = 0.99  # a remix's peak under full scale (the default model's swaps were made with it)


def partners(uids: list[str], count: int) -> list[tuple[str, str]]:
    """(episode, partner) pairs: each episode with the next `count` episodes of the list, in a ring.

    Neighbouring episodes of a benchmark have different ambient kinds (the loud ones walk the kinds in turn),
    so a partner's ambient differs in kind or level from the episode's own.
    """
    if count < 1:
        raise Action2SoundError(f"ambient swaps: --partners must be at least 1, got {count}")
    if len(uids) < 2:
        raise Action2SoundError(f"ambient swaps need at least 2 training episodes, found {len(uids)}; "
                                "build the benchmark with more --episodes")
    count = min(count, len(uids) - 1)
    return [(u, uids[(i + k) % len(uids)]) for i, u in enumerate(uids) for k in range(1, count + 1)]


def fit_length(x: np.ndarray, n: int, sample_rate: int) -> np.ndarray:
    """x cut to n samples, or looped to n with a short crossfade at each seam (no click where it joins)."""
    if x.size == 0:
        raise Action2SoundError("ambient swaps: an empty ambient stem; rebuild the benchmark")
    if x.size >= n:
        return x[:n].copy()
    fade = min(int(SEAM_S * sample_rate), x.size // 4)
    out = np.zeros(n, dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False) if fade else np.zeros(0)
    pos = 0
    while pos < n:
        seg = x.astype(np.float64)
        if pos > 0 and fade:  # overlap the previous piece's tail with this piece's head
            pos -= fade
            seg[:fade] *= ramp
            out[pos:pos + fade] *= 1.0 - ramp[: min(fade, n - pos)]
        take = min(seg.size, n - pos)
        out[pos:pos + take] += seg[:take]
        pos += take
    return out


def remix(stems: dict[str, np.ndarray], partner_ambient: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """action + offscreen of one episode + another's ambient (fitted to its length) -> (mix, scale applied).

    One scale (≤ 1) for the whole sum keeps its peak under HEADROOM, so the sum stays exact as in the benchmark.
    """
    n = stems["action"].size
    mix = (stems["action"].astype(np.float64) + stems["offscreen"].astype(np.float64)
           + fit_length(partner_ambient, n, sample_rate))
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    scale = min(1.0, HEADROOM / peak) if peak > 0 else 1.0
    return (mix * scale).astype(np.float32), scale


def _stem(bench: Path, uid: str, name: str, sample_rate: int) -> np.ndarray:
    path = bench / "episodes" / f"{uid}.{name}.wav"
    if not path.is_file():
        raise Action2SoundError(f"{path}: missing stem; ambient swaps need a benchmark folder written by "
                                "`action2sound data benchmark`")
    x, sr = soundfile.read(str(path), dtype="float32", always_2d=False)
    if sr != sample_rate:
        raise Action2SoundError(f"{path}: {sr} Hz, but the benchmark says {sample_rate} Hz; rebuild the benchmark")
    return x


def ambient_swaps(bench: Path, out: Path, count: int = 1, split: str | None = "train", progress: bool = True
                  ) -> dict:
    """Write the swaps of a benchmark's `split` episodes (None: all) into `out` (module text) -> the swaps record."""
    meta_path = bench / "benchmark.json"
    if not meta_path.is_file():
        raise Action2SoundError(f"{meta_path}: not found; pass a benchmark folder written by "
                                "`action2sound data benchmark`")
    meta = json.loads(meta_path.read_text())
    sr = int(meta["settings"]["sample_rate"])
    episodes = {e["video_uid"]: e for e in meta["episodes"] if split is None or e["split"] == split}
    pairs = partners(sorted(episodes), count)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    from tqdm import tqdm

    for uid, other in tqdm(pairs, desc="ambient swaps", unit="swap", disable=not progress):
        target = out / f"{uid}~{other}.mp4"
        rec = {"file": target.name, "video_uid": uid, "ambient_from": other,
               "ambient": episodes[other]["ambient"], "own_ambient": episodes[uid]["ambient"]}
        stems = {name: _stem(bench, uid, name, sr) for name in ("action", "offscreen")}
        mix, scale = remix(stems, _stem(bench, other, "ambient", sr), sr)  # recomputed on a rerun: cheap
        if not target.is_file():  # mux_audio writes through a staging name: a file here is complete
            mux_audio(bench / "episodes" / f"{uid}.mp4", mix, sr, target)
        rec["scale_db"] = round(20 * math.log10(scale), 3)
        records.append(rec)
    summary = {"format": "action2sound-ambient-swaps/1", "benchmark": str(bench.name), "split": split,
               "partners": count, "swaps": records}
    write_json_atomic(out / SWAPS_JSON, summary)
    return summary
