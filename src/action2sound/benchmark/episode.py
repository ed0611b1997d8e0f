"""The ambient-aware benchmark: synthetic first-person episodes whose sound is known stem by stem.

Each episode is a long video of a hand striking, scraping, dropping and shaking objects on a textured
surface, filmed by a drifting, slightly shaking camera. Its sound is the sum of three stems:
- action: the sound of every visible contact, starting on the audio sample of the frame where the contact
  is drawn (sample = round(frame * sample_rate / fps)), with the object's material and the action;
- ambient: a bed the picture does not show (rain, wind, hum, crowd, traffic, music, birds; quiet episodes
  get a faint room tone), one kind per episode at an episode-specific level that drifts slowly;
- offscreen: sounds with no visible cause (a knock, footsteps, dishes, a beep), from "another room".
Because neighbouring clips of an episode share its ambient but not its actions, the benchmark exercises
exactly what AV-LDM's audio condition is for, and the stems let sync, semantics, ambient leakage and ambient
control be measured exactly.

Layout of OUT (clip_file in the TSVs is relative to OUT/clips, as in Ego4D-Sounds):
  benchmark.json                        seed, settings, kinds, actions, per-episode ambient, the bank's licence
  all.tsv, train.tsv, test.tsv          the 16 Ego4D-Sounds columns (SPEC §4); split by episode
  episodes/<uid>.mp4                    the long video with its mixed sound
  episodes/<uid>.{action,ambient,offscreen,mix}.wav   float32 stems of the whole episode
  episodes/<uid>.events.json            objects, narrated actions, every event, and the renderer's contacts
  episodes/<uid>.scene.npz              camera, fingertip and object trajectories, per frame
  clips/<uid>/<uid>_narration_pass_1_<i>.mp4     3 s clips (video + mixed sound) around each action
  groundtruth/<clip_id>/{action,ambient,offscreen,mix}.wav, events.json, clip.json

Stems are 32-bit float WAV, the same length as the clip, and mix.wav == (action + ambient) + offscreen
exactly, summed in float32 in that order (so re-summing the read stems reproduces it bit for bit). The mp4's
sound is the same mix after AAC encoding (lossy: compare against mix.wav, not bit for bit).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from ..errors import Action2SoundError
from . import sound as synth  # split into sound + picture in the next commit

ACTIONS = ("hit", "scrape", "drop", "shake")
VERBS = {"hit": "hits", "scrape": "scrapes", "drop": "drops", "shake": "shakes"}
# What the narration calls an object of each procedural material.
NOUNS = {"wood": ("wooden", "board"), "metal": ("metal", "pan"), "glass": ("glass", "jar"),
         "ceramic": ("ceramic", "bowl"), "plastic": ("plastic", "box")}
EGO4D_COLUMNS = ("video_uid", "video_dur", "narration_source", "narration_ind", "narration_time", "clip_start",
                 "clip_end", "clip_text", "tag_verb", "tag_noun", "positive", "clip_file", "speech",
                 "background_music", "traffic_noise", "wind_noise")
FLAG_COLUMNS = ("speech", "background_music", "traffic_noise", "wind_noise")
NARRATION_SOURCE = "narration_pass_1"
STEMS = ("action", "ambient", "offscreen")
AUDIO_EXTENSIONS = (".wav", ".ogg", ".flac", ".mp3", ".m4a", ".aiff", ".aif", ".opus")

GRIP_Z = 0.12  # hand height while holding an object: gripping is not a sounding contact
_Z_EPS = 1e-9
_QUIET_EVERY = 4  # episodes 1, 5, 9, ... are quiet: a quiet condition exists whenever N >= 2
_QUIET_DB = (-66.0, -58.0)  # ambient RMS, dBFS
_AMBIENT_DB = (-38.0, -22.0)
_HEADROOM = 0.95  # the mix never peaks above this (all stems share the scale, so their sum stays exact)


# ============================================================================================== data types
@dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one benchmark build (written to benchmark.json)."""

    episodes: int
    seed: int
    bank: str
    size: int = 224
    fps: float = 15.0
    sample_rate: int = 22050
    episode_seconds: tuple[float, float] = (40.0, 90.0)
    clip_seconds: float = 3.0
    test_fraction: float = 0.2

    @property
    def clip_frames(self) -> int:
        return int(round(self.clip_seconds * self.fps))

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))


@dataclass(frozen=True)
class SceneObject:
    """An object on the surface: its kind (material) and footprint in world pixels."""

    index: int
    kind: str
    shape: str
    x: float
    y: float
    rx: float
    ry: float

    def contains(self, px: float, py: float, x: float | None = None, y: float | None = None) -> bool:
        """Is the point (px, py) on the object's footprint (centred at x, y; default its rest position)?"""
        dx = (px - (self.x if x is None else x)) / self.rx
        dy = (py - (self.y if y is None else y)) / self.ry
        if self.shape in ("disc", "pan"):
            return dx * dx + dy * dy <= 1.0
        if self.shape == "rect":
            return abs(dx) <= 1.0 and abs(dy) <= 1.0
        return dx ** 6 + dy ** 6 <= 1.0


@dataclass(frozen=True)
class Event:
    """One sound: a visible contact (object >= 0) or an off-screen source (object = -1)."""

    frame: int  # episode frame drawn at the moment the sound starts
    sample: int  # episode audio sample where it starts: round(frame * sample_rate / fps)
    time: float  # frame / fps, seconds
    object: int
    kind: str  # the object's material, or the off-screen source
    action: str
    onscreen: bool
    gain: float  # peak of the dry sound in the stem
    duration: float  # seconds of sounding contact (scrape, shake); 0 for an impact
    sound_seconds: float  # length of the sound written to the stem, tail included
    narration: int  # index of the narrated action it belongs to; -1 off-screen


@dataclass(frozen=True)
class NarratedAction:
    """One narrated action; its clip is centred on its first contact."""

    index: int
    action: str
    object: int
    frame: int  # the first contact
    events: tuple[int, ...]


@dataclass(frozen=True)
class Contact:
    """A contact onset as the renderer sees it in the drawn geometry."""

    frame: int
    object: int
    type: str  # "touch" (fingertip reaches the object), "land" (a falling object reaches the surface),
    #            "shake" (a held object starts to be shaken)


@dataclass(frozen=True)
class Trajectory:
    """Per-frame state of an episode's scene (world pixels; z = height above the surface, 0 = on it)."""

    camera: np.ndarray  # int64 [T, 2] top-left corner of the view
    hand: np.ndarray  # float64 [T, 3] index fingertip x, y, z
    objects: np.ndarray  # float64 [n_objects, T, 3] centre x, y, z
    held: np.ndarray  # int64 [T] object in the hand, or -1


@dataclass(frozen=True)
class Episode:
    """A synthesised episode before writing: scene, plan, events and the three float32 stems."""

    uid: str
    index: int
    n_frames: int
    surface: str
    objects: tuple[SceneObject, ...]
    trajectory: Trajectory
    actions: tuple[NarratedAction, ...]
    events: tuple[Event, ...]
    ambient_kind: str
    ambient_db: float
    ambient_drift_db: float
    quiet: bool
    flags: dict[str, int]
    stems: dict[str, np.ndarray]  # "action", "ambient", "offscreen": float32 [samples]
    scale: float  # the headroom scale applied to every stem
    renderer: synth.SceneRenderer = field(repr=False)

    @property
    def mix(self) -> np.ndarray:
        """(action + ambient) + offscreen, float32 [samples]."""
        return self.stems["action"] + self.stems["ambient"] + self.stems["offscreen"]


@dataclass(frozen=True)
class BenchmarkSummary:
    """What build_benchmark wrote."""

    root: Path
    episodes: int
    clips: int
    train_clips: int
    test_clips: int
    seconds: float  # total episode duration
    elapsed: float  # wall-clock seconds of the build

    def __str__(self) -> str:
        return (f"benchmark at {self.root}: {self.episodes} episodes ({self.seconds:.0f} s of video), "
                f"{self.clips} clips ({self.train_clips} train, {self.test_clips} test), "
                f"built in {self.elapsed:.1f} s")


# ============================================================================================== sound banks
class ProceduralBank:
    """Physically-motivated synthesis: modal impacts, friction scrapes, granular shakes, shaped-noise beds."""

    name = "procedural"
    licence = "procedurally synthesised by action2sound; no third-party recordings"
    kinds = tuple(synth.MATERIALS)
    ambient_kinds = synth.AMBIENT_KINDS

    def identity(self, kind: str, rng: np.random.Generator) -> synth.ModalBody:
        return synth.modal_body(synth.MATERIALS[kind], rng)

    def event_sound(self, body: synth.ModalBody, action: str, params: dict, sr: int,
                    rng: np.random.Generator) -> np.ndarray:
        """The dry, unit-peak sound of `action` on `body`, onset at sample 0."""
        if action == "hit":
            return synth.impact(body, sr, rng, hardness=params["hardness"])
        if action == "scrape":
            return synth.scrape(body, sr, rng, params["duration"])
        if action == "shake":
            return synth.shake(body, sr, rng, np.asarray(params["clusters"]), params["duration"])
        if action == "drop":
            hit = synth.impact(body, sr, rng, hardness=params["hardness"])
            thud = synth.surface_thud(sr, rng)
            y = np.zeros(max(hit.size, thud.size))
            y[: hit.size] += hit
            y[: thud.size] += 0.5 * thud
            return synth.unit_peak(y)
        raise ValueError(f"unknown action {action!r}")

    def offscreen(self, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
        name = sorted(synth.OFFSCREEN_SOURCES)[int(rng.integers(len(synth.OFFSCREEN_SOURCES)))]
        kind, action = synth.OFFSCREEN_SOURCES[name]
        return synth.offscreen_sound(name, sr, rng), kind, action

    def quiet_kind(self, rng: np.random.Generator) -> str:
        return synth.QUIET_AMBIENT

    def ambient(self, kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        return synth.ambient_bed(kind, n, sr, rng)

    def flags(self, kind: str) -> dict[str, int]:
        raised = synth.AMBIENT_FLAGS.get(kind, ())
        return {c: int(c in raised) for c in FLAG_COLUMNS}


# Words in a recording's name that raise an Ego4D-Sounds flag.
_FLAG_WORDS = {
    "speech": ("crowd", "speech", "talk", "voice", "babble", "people", "market", "trade", "chatter"),
    "background_music": ("music", "radio", "song", "piano", "choir"),
    "traffic_noise": ("traffic", "car", "road", "street", "engine", "highway"),
    "wind_noise": ("wind", "storm", "gust"),
}


class RecordingBank:
    """Real recordings: DIR/events/<kind>/**/*.{wav,ogg,flac} (optionally events/<kind>/<action>/) and DIR/ambient/*."""

    def __init__(self, root: str | Path, sample_rate: int):
        root = Path(root)
        self.root = root
        self.name = str(root)
        self.sample_rate = sample_rate
        fix = ("make DIR/events/<kind>/ folders of .wav/.ogg/.flac sounds and DIR/ambient/ with recordings, "
               "or build one with `action2sound data soundbank DIR`")
        if not root.is_dir():
            raise Action2SoundError(f"sound bank {root} is not a folder; {fix}")
        events_dir = root / "events"
        self._files: dict[str, list[Path]] = {}
        self._by_action: dict[tuple[str, str], list[Path]] = {}
        if events_dir.is_dir():
            for d in sorted(p for p in events_dir.iterdir() if p.is_dir()):
                files = _audio_files(d)
                if files:
                    self._files[d.name] = files
                    for a in ACTIONS:
                        if (d / a).is_dir() and _audio_files(d / a):
                            self._by_action[(d.name, a)] = _audio_files(d / a)
        if not self._files:
            raise Action2SoundError(f"sound bank {root}: no sounds under {events_dir}/<kind>/; {fix}")
        self._ambient = _audio_files(root / "ambient") if (root / "ambient").is_dir() else []
        if not self._ambient:
            raise Action2SoundError(f"sound bank {root}: no recordings in {root / 'ambient'}; {fix}")
        self.kinds = tuple(self._files)
        self.ambient_kinds = tuple(_ambient_name(root, p) for p in self._ambient)
        lic = root / "LICENSES.md"
        self.licence_file = lic if lic.is_file() else None
        self.licence = ("see BANK_LICENSES.md (copied from the bank's LICENSES.md)" if self.licence_file else
                        f"unknown: the bank {root.name} has no LICENSES.md")
        self._cache: dict[Path, np.ndarray] = {}

    def _load(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            from ..media import read_audio_file  # media I/O sits below data; imported late to keep import light

            try:
                x = read_audio_file(path, self.sample_rate).astype(np.float64)
            except Action2SoundError:
                raise
            except Exception as e:  # noqa: BLE001 - any decoder failure is the same problem for the user
                raise Action2SoundError(f"sound bank file {path} could not be decoded ({e}); remove or "
                                        "re-encode it") from None
            if x.size == 0 or not np.any(x):
                raise Action2SoundError(f"sound bank file {path} is empty or silent; remove it")
            self._cache[path] = x
        return self._cache[path]

    def identity(self, kind: str, rng: np.random.Generator) -> tuple[str, tuple[Path, ...]]:
        # One object keeps to a few recordings of its kind, so it sounds like the same object each time.
        files = self._files[kind]
        pick = rng.choice(len(files), size=min(3, len(files)), replace=False)
        return kind, tuple(files[i] for i in sorted(pick))

    def event_sound(self, ident: tuple[str, tuple[Path, ...]], action: str, params: dict, sr: int,
                    rng: np.random.Generator) -> np.ndarray:
        """A recording of the object's kind, trimmed to start on its onset, shaped to the action's length."""
        kind, files = ident
        files = self._by_action.get((kind, action), files)
        x = _from_onset(self._load(files[int(rng.integers(len(files)))]))
        if action in ("scrape", "shake"):
            keep = int((params["duration"] + (0.05 if action == "scrape" else 0.25)) * sr)
            x = _fade_out(x[:keep], int(0.04 * sr))
        else:
            x = _fade_out(x[: int(4.0 * sr)], int(0.05 * sr))
        return synth.unit_peak(x)

    def offscreen(self, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        files = self._files[kind]
        x = _from_onset(self._load(files[int(rng.integers(len(files)))]))
        return synth.unit_peak(_fade_out(x[: int(4.0 * sr)], int(0.05 * sr))), kind, "sound"

    def quiet_kind(self, rng: np.random.Generator) -> str:
        return self.ambient_kinds[int(rng.integers(len(self.ambient_kinds)))]

    def ambient(self, kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        x = self._load(self._ambient[self.ambient_kinds.index(kind)])
        y = _loop(x, n, sr, rng)
        y = y - float(np.mean(y))
        return y / (np.sqrt(np.mean(y ** 2)) or 1.0)

    def flags(self, kind: str) -> dict[str, int]:
        name = kind.lower()
        return {c: int(any(w in name for w in _FLAG_WORDS[c])) for c in FLAG_COLUMNS}


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _ambient_name(root: Path, path: Path) -> str:
    return path.relative_to(root / "ambient").with_suffix("").as_posix()


def _from_onset(x: np.ndarray, rel: float = 0.05) -> np.ndarray:
    """Drop what comes before the first sample above `rel` x peak, so the onset is sample 0."""
    thr = rel * float(np.max(np.abs(x)))
    i = int(np.argmax(np.abs(x) >= thr))
    return x[i:]


def _fade_out(x: np.ndarray, n: int) -> np.ndarray:
    x = x.copy()
    n = min(n, x.size)
    if n > 1:
        x[-n:] *= np.linspace(1.0, 0.0, n)
    return x


def _loop(x: np.ndarray, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Loop a recording to n samples from a random start, with equal-power crossfades at the joins."""
    fade = min(int(0.25 * sr), x.size // 4)
    out = np.zeros(n)
    start = int(rng.integers(0, max(1, x.size - fade)))
    seg = x[start:]
    pos = 0
    while pos < n:
        k = min(seg.size, n - pos)
        piece = seg[:k].copy()
        if pos > 0 and fade > 0:
            f = min(fade, k)
            ramp = np.sin(np.linspace(0.0, math.pi / 2, f))
            piece[:f] *= ramp
            out[pos : pos + f] *= ramp[::-1]  # the previous piece's tail fades out under this one
        out[pos : pos + k] += piece
        pos += k - (fade if pos + k < n and k > fade else 0)
        seg = x
    return out


def open_bank(bank: str | Path, sample_rate: int) -> ProceduralBank | RecordingBank:
    """'procedural' or a folder of recordings -> the bank object."""
    if isinstance(bank, str) and bank == "procedural":
        return ProceduralBank()
    return RecordingBank(Path(bank), sample_rate)


# =============================================================================================== planning
def frame_to_sample(frame: int, fps: float, sample_rate: int) -> int:
    """The audio sample at which frame `frame` is shown: round(frame * sample_rate / fps)."""
    return int(math.floor(frame * sample_rate / fps + 0.5))


def _ease(kind: str, u: float) -> float:
    if kind == "in":  # accelerating: a strike coming down
        return u * u
    if kind == "out":
        return 1.0 - (1.0 - u) ** 2
    if kind == "linear":
        return u
    return u * u * (3.0 - 2.0 * u)


class _Overflow(Exception):
    """The action does not fit in what is left of the episode."""


class _Planner:
    """Writes the hand's and the objects' per-frame positions action by action, keeping count of events."""

    def __init__(self, n_frames: int, fps: float, objects: list[SceneObject], hand_start: np.ndarray):
        self.T, self.fps = n_frames, fps
        self.hand = np.tile(hand_start.astype(np.float64), (n_frames, 1))
        rest = np.array([[o.x, o.y, 0.0] for o in objects], dtype=np.float64)
        self.obj = np.repeat(rest[:, None, :], n_frames, axis=1)
        self.rest = rest
        self.held = np.full(n_frames, -1, dtype=np.int64)
        self.f = 0
        self.holding = -1
        self.events: list[dict] = []

    def n(self, seconds: float) -> int:
        return max(1, int(round(seconds * self.fps)))

    def snapshot(self):
        return (self.hand.copy(), self.obj.copy(), self.held.copy(), self.f, self.holding, len(self.events))

    def restore(self, snap) -> None:
        self.hand, self.obj, self.held, self.f, self.holding, k = snap
        del self.events[k:]

    def _set(self, k: int, pos: np.ndarray) -> None:
        if k >= self.T:
            raise _Overflow
        self.hand[k] = pos
        self.held[k] = self.holding
        if self.holding >= 0:
            self.obj[self.holding, k] = pos - np.array([0.0, 0.0, GRIP_Z])

    def move(self, target, frames: int, ease: str = "smooth") -> None:
        p0, p1 = self.hand[self.f].copy(), np.asarray(target, dtype=np.float64)
        same = p0 == p1
        for j in range(1, frames + 1):
            e = _ease(ease, j / frames)
            # p0 * (1 - e) + p1 * e hits p1 exactly at e = 1, so "z = 0" is exact on contact frames; a
            # coordinate that does not change is copied, never recomputed (x(1 - e) + xe may miss x by an ulp).
            self._set(self.f + j, np.where(same, p0, p0 * (1.0 - e) + p1 * e))
        self.f += frames

    def wait(self, frames: int) -> None:
        self.path(np.repeat(self.hand[self.f][None, :], frames, axis=0))

    def path(self, points: np.ndarray) -> None:
        for j, p in enumerate(points, start=1):
            self._set(self.f + j, p)
        self.f += len(points)

    def event(self, action: str, obj: int, gain: float, **params) -> None:
        self.events.append(dict(frame=self.f, object=obj, action=action, gain=gain, params=params))

    def fall(self, obj: int, frames: int) -> int:
        """Release the held object now: it falls straight down and lands `frames` frames later -> landing frame."""
        x, y, h = self.obj[obj, self.f]
        if self.f + frames >= self.T:
            raise _Overflow
        for k in range(1, frames + 1):
            self.obj[obj, self.f + k] = (x, y, h * (1.0 - (k / frames) ** 2))
        self.holding = -1
        return self.f + frames


def _point_on(o: SceneObject, rng: np.random.Generator, spread: float = 0.5) -> tuple[float, float]:
    a = rng.uniform(0, 2 * math.pi)
    r = spread * math.sqrt(rng.uniform(0, 1))
    return o.x + r * o.rx * math.cos(a), o.y + r * o.ry * math.sin(a)


def _plan_action(p: _Planner, o: SceneObject, action: str, rng: np.random.Generator, size: int) -> None:
    """Append one narrated action on object o to the planner (approach, contacts, events)."""
    fps = p.fps
    if action == "hit":
        tx, ty = _point_on(o, rng)
        p.move((tx, ty, rng.uniform(0.6, 0.9)), p.n(rng.uniform(0.4, 0.8)))
        for _ in range(int(rng.choice([1, 1, 2, 3]))):
            p.move((tx, ty, rng.uniform(0.9, 1.3)), p.n(0.2), "out")
            p.move((tx, ty, 0.0), max(2, p.n(0.12)), "in")
            gain = rng.uniform(0.45, 1.0)
            p.event("hit", o.index, gain, hardness=0.6 + 0.6 * gain)
            p.move((tx, ty, rng.uniform(0.4, 0.6)), p.n(0.2), "out")
            tx, ty = _point_on(o, rng)
    elif action == "scrape":
        a = rng.uniform(0, 2 * math.pi)
        ca, sa = math.cos(a), math.sin(a)
        x0, y0 = o.x - 0.55 * o.rx * ca, o.y - 0.55 * o.ry * sa
        x1, y1 = o.x + 0.55 * o.rx * ca, o.y + 0.55 * o.ry * sa
        p.move((x0, y0, 0.6), p.n(rng.uniform(0.4, 0.8)))
        p.move((x0, y0, 0.0), max(2, p.n(0.2)), "in")
        slide = p.n(rng.uniform(0.5, 1.1))
        # The contact lasts from this frame to the first frame the fingertip is off again.
        p.event("scrape", o.index, rng.uniform(0.3, 0.55), duration=(slide + 1) / fps)
        p.move((x1, y1, 0.0), slide, "linear")
        p.move((x1, y1, 0.6), p.n(0.25), "out")
    elif action in ("drop", "shake"):
        p.move((o.x, o.y, 0.6), p.n(rng.uniform(0.4, 0.8)))
        p.move((o.x, o.y, GRIP_Z), p.n(0.2), "in")
        p.holding = o.index
        p.wait(p.n(0.15))
        if action == "drop":
            lift = rng.uniform(0.9, 1.4)
            p.move((o.x, o.y, GRIP_Z + lift), p.n(0.45))
            p.wait(p.n(rng.uniform(0.1, 0.3)))
            land = p.fall(o.index, max(2, p.n(0.22 * math.sqrt(lift))))
            p.move((o.x + 0.05 * size, o.y + 0.08 * size, GRIP_Z + lift + 0.1), land - p.f, "out")
            p.f = land
            p.event("drop", o.index, 0.55 + 0.35 * min(lift, 1.4) / 1.4, hardness=0.8 + 0.3 * lift)
        else:
            lift = rng.uniform(0.45, 0.7)
            p.move((o.x, o.y, GRIP_Z + lift), p.n(0.35))
            p.wait(p.n(0.1))
            # n_cyc full cycles in `frames` frames: the displacement is back to zero on the last one.
            fs_max = min(4.0, fps / 4.0)
            n_cyc = int(rng.integers(2, 5))
            frames = max(4, int(round(n_cyc / rng.uniform(min(2.0, fs_max), fs_max) * fps)))
            fs = n_cyc * fps / frames
            amp = rng.uniform(0.04, 0.07) * size
            ang = rng.uniform(-0.5, 0.5)
            k = np.arange(1, frames + 1)
            disp = amp * np.sin(2 * math.pi * fs * k / fps)
            disp[-1] = 0.0
            pts = np.stack([o.x + disp * math.cos(ang), o.y + disp * math.sin(ang),
                            np.full(frames, GRIP_Z + lift)], axis=1)
            pts[-1, :2] = (o.x, o.y)
            start = p.f + 1  # the first frame that shows the object moving
            # Contents hit the wall at each reversal (displacement peaks), counted from the first moving frame.
            peaks = (np.arange(2 * n_cyc) + 0.5) / (2 * fs) - 1.0 / fps
            clusters = np.concatenate([[0.0], peaks[peaks > 0.0]])
            p.f = start - 1
            p.path(pts)
            shake_event = dict(frame=start, object=o.index, action="shake", gain=rng.uniform(0.3, 0.6),
                               params=dict(duration=frames / fps, clusters=clusters.tolist()))
            p.events.append(shake_event)
            drop_h = rng.uniform(0.12, 0.2)
            p.move((o.x, o.y, GRIP_Z + drop_h), p.n(0.3))
            land = p.fall(o.index, 2)
            p.move((o.x + 0.04 * size, o.y + 0.06 * size, GRIP_Z + drop_h + 0.3), land - p.f, "out")
            p.f = land
            p.event("drop", o.index, rng.uniform(0.2, 0.35), hardness=0.7)
        p.move(p.hand[p.f] + np.array([0.0, 0.0, 0.3]), p.n(0.2))
    else:
        raise ValueError(f"unknown action {action!r}")


def detect_contacts(traj: Trajectory, objects: tuple[SceneObject, ...]) -> list[Contact]:
    """The contact onsets visible in the drawn geometry, frame by frame (independent of the plan)."""
    out: list[Contact] = []
    T = traj.hand.shape[0]
    prev_touch, shaken_in_hold = -1, False
    for k in range(T):
        hx, hy, hz = traj.hand[k]
        touch = -1
        if hz <= _Z_EPS:
            for o in objects:
                ox, oy, oz = traj.objects[o.index, k]
                if oz <= _Z_EPS and o.contains(hx, hy, ox, oy):
                    touch = o.index
                    break
        if touch >= 0 and touch != prev_touch:
            out.append(Contact(k, touch, "touch"))
        prev_touch = touch
        for o in objects:
            if k > 0 and traj.objects[o.index, k, 2] <= _Z_EPS < traj.objects[o.index, k - 1, 2]:
                out.append(Contact(k, o.index, "land"))
        h = int(traj.held[k])
        if k > 0 and h != int(traj.held[k - 1]):
            shaken_in_hold = False
        if h >= 0 and not shaken_in_hold:
            o = objects[h]
            x, y, z = traj.objects[h, k]
            if z > _Z_EPS and (x != o.x or y != o.y):
                out.append(Contact(k, h, "shake"))
                shaken_in_hold = True
    return out


def _camera_path(n: int, fps: float, margin: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Top-left corner per frame: a slow drift plus a small walking shake and jitter -> int64 [n, 2]."""
    t = np.arange(n) / fps
    cam = np.zeros((n, 2))
    for axis in range(2):
        drift = sum(np.sin(2 * math.pi * t / rng.uniform(6.0, 20.0) + rng.uniform(0, 2 * math.pi))
                    for _ in range(2)) / 2.0
        bob = rng.uniform(0.2, 0.6) * margin / 6 * np.sin(2 * math.pi * rng.uniform(1.5, 2.2) * t
                                                           + rng.uniform(0, 6.3))
        jitter = rng.normal(0.0, max(0.5, size / 224), n)
        cam[:, axis] = margin + 0.75 * margin * drift + bob + jitter
    return np.clip(np.round(cam), 0, 2 * margin).astype(np.int64)


def _place_objects(kinds: list[str], size: int, margin: int, rng: np.random.Generator) -> list[SceneObject]:
    objects: list[SceneObject] = []
    for kind in kinds:
        look = synth.look_for_kind(kind)
        rx = rng.uniform(0.075, 0.105) * size * (1.25 if look.shape == "rect" else 1.0)
        ry = rx * look.aspect
        clear = rx * (2.1 if look.shape == "pan" else 1.0)
        for _ in range(200):
            x = margin + rng.uniform(0.2, 0.8) * size
            y = margin + rng.uniform(0.17, 0.66) * size
            if look.shape == "pan" and x + 2.05 * rx > margin + 0.95 * size:
                continue
            if all(math.hypot(x - q.x, y - q.y) > clear + max(q.rx, q.ry) * (2.1 if q.shape == "pan" else 1)
                   + 0.03 * size for q in objects):
                objects.append(SceneObject(len(objects), kind, look.shape, float(x), float(y), float(rx),
                                           float(ry)))
                break
    return objects


def _seed_rngs(seed: int, index: int, count: int) -> list[np.random.Generator]:
    # Episode i's content depends only on (seed, i): building more episodes never changes the first ones.
    ss = np.random.SeedSequence(seed, spawn_key=(index,))
    return [np.random.default_rng(s) for s in ss.spawn(count)]


def episode_uid(seed: int, index: int) -> str:
    return f"a2s-{seed}-{index:04d}"


def make_episode(index: int, cfg: BenchmarkConfig, bank: ProceduralBank | RecordingBank) -> Episode:
    """Plan, lay out and sound one episode (no files written)."""
    r_scene, r_plan, r_sound, r_amb, r_off, r_len = _seed_rngs(cfg.seed, index, 6)
    fps, sr, S = cfg.fps, cfg.sample_rate, cfg.size
    n_frames = int(round(r_len.uniform(*cfg.episode_seconds) * fps))
    margin = max(4, int(round(0.1 * S)))
    world_px = S + 2 * margin

    # 1. The scene: surface, objects, hand, camera.
    surface = synth.SURFACES[int(r_scene.integers(len(synth.SURFACES)))]
    world = synth.surface_texture(surface, world_px, world_px, r_scene)
    kinds = list(bank.kinds)
    count = int(r_scene.integers(3, 6))
    chosen = list(r_scene.choice(kinds, size=min(count, len(kinds)), replace=False))
    chosen += list(r_scene.choice(kinds, size=count - len(chosen)))
    objects = _place_objects([str(k) for k in chosen], S, margin, r_scene)
    props = []
    for o in objects:
        sprite, anchor = synth.object_sprite(synth.look_for_kind(o.kind), o.rx, o.ry, r_scene)
        props.append(synth.Prop(sprite, anchor, o.x, o.y))
    renderer = synth.SceneRenderer(world, props, S, synth.hand_look(r_scene))
    camera = _camera_path(n_frames, fps, margin, r_scene, S)

    # 2. The plan: actions one after another, each fully inside the episode with room for its clip.
    rest = np.array([margin + 0.62 * S, margin + 0.84 * S, 0.8])
    p = _Planner(n_frames, fps, objects, rest)
    half = cfg.clip_frames // 2
    p.wait(half + 1 + p.n(r_plan.uniform(0.0, 0.8)))
    actions: list[NarratedAction] = []
    last = -1
    while True:
        snap = p.snapshot()
        choices = [o.index for o in objects if o.index != last] or [o.index for o in objects]
        o = objects[int(r_plan.choice(choices))]
        action = str(r_plan.choice(ACTIONS, p=[0.35, 0.25, 0.2, 0.2]))
        try:
            _plan_action(p, o, action, r_plan, S)
            first = p.events[snap[5]]["frame"]
            # Strictly inside (one spare frame), so the clip's audio never runs past the episode's end.
            if first - half < 0 or first - half + cfg.clip_frames >= n_frames or p.f >= n_frames - 1:
                raise _Overflow
        except _Overflow:
            p.restore(snap)
            break
        actions.append(NarratedAction(len(actions), action, o.index, first,
                                      tuple(range(snap[5], len(p.events)))))
        last = o.index
        snap = p.snapshot()
        try:
            idle = rest + np.array([r_plan.uniform(-0.1, 0.1) * S, r_plan.uniform(-0.06, 0.02) * S,
                                    r_plan.uniform(-0.1, 0.2)])
            p.move(idle, p.n(r_plan.uniform(0.3, 0.9)))
            p.wait(p.n(r_plan.uniform(0.0, 1.2)))
        except _Overflow:
            p.restore(snap)
            break
    if not actions:
        raise Action2SoundError(f"episode {index}: no action fits in {n_frames / fps:.1f} s; raise "
                                "episode_seconds (at least clip_seconds + 3 s)")
    p.hand[p.f + 1 :] = p.hand[p.f]
    traj = Trajectory(camera, p.hand, p.obj, p.held)

    # 3. The sounds of the visible contacts, each starting on its frame's sample.
    n_samples = frame_to_sample(n_frames, fps, sr)
    identities = [bank.identity(o.kind, r_sound) for o in objects]
    room = synth.room_response(sr, r_sound, r_sound.uniform(0.25, 0.5))
    wet = r_sound.uniform(0.05, 0.15)
    action_stem = np.zeros(n_samples)
    events: list[Event] = []
    narration_of = {e: a.index for a in actions for e in a.events}
    for j, ev in enumerate(p.events):
        dry = bank.event_sound(identities[ev["object"]], ev["action"], ev["params"], sr, r_sound)
        wave = synth.add_room(ev["gain"] * dry, room, wet)
        s = frame_to_sample(ev["frame"], fps, sr)
        k = min(wave.size, n_samples - s)
        action_stem[s : s + k] += wave[:k]
        events.append(Event(ev["frame"], s, ev["frame"] / fps, ev["object"], objects[ev["object"]].kind,
                            ev["action"], True, float(ev["gain"]), float(ev["params"].get("duration", 0.0)),
                            wave.size / sr, narration_of[j]))

    # 4. Off-screen sounds, away from the visible contacts so every onset stays attributable.
    off_stem = np.zeros(n_samples)
    busy = [(e.time, e.time + e.duration) for e in events]  # visible contacts, sustained ones whole
    dur = n_frames / fps
    wanted = max(1, int(r_off.poisson(dur / 9.0)))
    taken: list[tuple[float, float]] = []
    for _ in range(wanted * 50):
        if len(taken) >= wanted:
            break
        t = r_off.uniform(0.5, dur - 0.5)
        frame = int(round(t * fps))
        t = frame / fps
        if any(a - 0.35 < t < b + 0.35 for a, b in busy):
            continue
        dry, kind, act = bank.offscreen(sr, r_off)
        gain = r_off.uniform(0.12, 0.35)
        wave = synth.distant(gain * dry, sr, r_off)
        # Off-screen sounds never overlap one another (tails included): each one's onset stays clean.
        if any(t < b + 0.1 and a < t + wave.size / sr + 0.1 for a, b in taken):
            continue
        s = frame_to_sample(frame, fps, sr)
        k = min(wave.size, n_samples - s)
        off_stem[s : s + k] += wave[:k]
        taken.append((t, t + wave.size / sr))
        events.append(Event(frame, s, t, -1, kind, act, False, float(gain), 0.0, wave.size / sr, -1))
    events.sort(key=lambda e: (e.sample, e.object))

    # 5. The ambient bed: one kind per episode, an episode-specific level that drifts slowly.
    quiet = index % _QUIET_EVERY == 1
    if quiet:
        amb_kind = bank.quiet_kind(r_amb)
        level_db = r_amb.uniform(*_QUIET_DB)
    else:
        order = list(np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1 << 20,)))
                     .permutation(len(bank.ambient_kinds)))
        loud_index = index - (index + _QUIET_EVERY - 1) // _QUIET_EVERY  # count of non-quiet episodes before
        amb_kind = bank.ambient_kinds[order[loud_index % len(order)]]
        level_db = r_amb.uniform(*_AMBIENT_DB)
    drift_db = r_amb.uniform(1.5, 4.0)
    bed = bank.ambient(amb_kind, n_samples, sr, r_amb)
    curve = level_db + drift_db * synth.slow_curve(n_samples, sr, r_amb, (15.0, 60.0), terms=2)
    ambient_stem = bed * 10.0 ** (curve / 20.0)

    # 6. Headroom: one scale for all stems keeps their sum exact; then float32 once, for good.
    mix = action_stem + ambient_stem + off_stem
    peak = float(np.max(np.abs(mix)))
    scale = min(1.0, _HEADROOM / peak) if peak > 0 else 1.0
    stems = {"action": (action_stem * scale).astype(np.float32),
             "ambient": (ambient_stem * scale).astype(np.float32),
             "offscreen": (off_stem * scale).astype(np.float32)}
    if scale != 1.0:
        events = [Event(**{**asdict(e), "gain": e.gain * scale}) for e in events]
    return Episode(episode_uid(cfg.seed, index), index, n_frames, surface, tuple(objects), traj, tuple(actions),
                   tuple(events), amb_kind, float(level_db + 20 * math.log10(scale)), float(drift_db), quiet,
                   bank.flags(amb_kind), stems, scale, renderer)


def render_frames(ep: Episode, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Frames [start, stop) of an episode -> uint8 [T, S, S, 3]."""
    stop = ep.n_frames if stop is None else stop
    tr = ep.trajectory
    out = np.empty((stop - start, ep.renderer.size, ep.renderer.size, 3), dtype=np.uint8)
    for j, k in enumerate(range(start, stop)):
        out[j] = ep.renderer.frame(tr.camera[k], tr.hand[k], tr.objects[:, k])
    return out


# ================================================================================================= writing
def narration(action: str, kind: str) -> tuple[str, str, str]:
    """(clip_text, verb, noun) in the Ego4D style, e.g. ("#C C hits the metal pan", "hit", "pan")."""
    adj, noun = NOUNS.get(kind, ("", kind.replace("_", " ").replace("-", " ")))
    thing = f"{adj} {noun}".strip()
    return f"#C C {VERBS[action]} the {thing}", action, noun


def clip_id(uid: str, ind: int) -> str:
    return f"{uid}_{NARRATION_SOURCE}_{ind}"


def _event_json(e: Event, frame0: int, sample0: int, sr: int) -> dict:
    return {"time": round((e.sample - sample0) / sr, 6), "frame": e.frame - frame0, "sample": e.sample - sample0,
            "kind": e.kind, "action": e.action, "onscreen": e.onscreen, "gain": round(e.gain, 6),
            "duration": round(e.duration, 6), "object": e.object}


def _write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    soundfile.write(str(path), np.asarray(x, dtype=np.float32), sr, subtype="FLOAT")


def _validate(cfg: BenchmarkConfig) -> None:
    if cfg.episodes < 1:
        raise Action2SoundError(f"--episodes must be >= 1, got {cfg.episodes}")
    if cfg.seed < 0:
        raise Action2SoundError(f"--seed must be >= 0, got {cfg.seed}")
    if cfg.size < 32 or cfg.size % 2:
        raise Action2SoundError(f"--size must be an even number >= 32, got {cfg.size}")
    if cfg.fps <= 0 or abs(cfg.clip_seconds * cfg.fps - round(cfg.clip_seconds * cfg.fps)) > 1e-9:
        raise Action2SoundError(f"clip_seconds * fps must be a whole number of frames, got {cfg.clip_seconds} "
                                f"s at {cfg.fps} fps; pick fps so that it is")
    lo, hi = cfg.episode_seconds
    if lo > hi or lo < cfg.clip_seconds + 3.0:
        raise Action2SoundError(f"episode_seconds {cfg.episode_seconds} must be an increasing pair with the "
                                f"shortest at least clip_seconds + 3 = {cfg.clip_seconds + 3.0} s")
    if not 0.0 <= cfg.test_fraction < 1.0:
        raise Action2SoundError(f"test_fraction must be in [0, 1), got {cfg.test_fraction}")
    if cfg.sample_rate < 8000:
        raise Action2SoundError(f"sample_rate must be >= 8000, got {cfg.sample_rate}")


def test_episodes(cfg: BenchmarkConfig) -> set[int]:
    """Which episodes form the test split: round(N * test_fraction), at least one when N >= 2."""
    n = cfg.episodes
    k = 0 if n < 2 else max(1 if cfg.test_fraction > 0 else 0, int(round(n * cfg.test_fraction)))
    order = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1 << 21,))).permutation(n)
    return set(int(i) for i in order[:k])


def build_benchmark(
    out_dir: str | Path,
    episodes: int,
    seed: int,
    bank: str | Path = "procedural",
    size: int = 224,
    fps: float = 15.0,
    sample_rate: int = 22050,
    episode_seconds: tuple[float, float] = (40.0, 90.0),
    clip_seconds: float = 3.0,
    test_fraction: float = 0.2,
    progress: bool = True,
) -> BenchmarkSummary:
    """Build the ambient-aware benchmark under out_dir (layout in the module docstring) -> its summary."""
    from ..media import write_video

    t_start = time.perf_counter()
    cfg = BenchmarkConfig(episodes, seed, str(bank), size, float(fps), int(sample_rate),
                          (float(episode_seconds[0]), float(episode_seconds[1])), float(clip_seconds),
                          float(test_fraction))
    _validate(cfg)
    sound_bank = open_bank(bank, cfg.sample_rate)
    out = Path(out_dir)
    for sub in ("episodes", "clips", "groundtruth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if getattr(sound_bank, "licence_file", None):
        shutil.copyfile(sound_bank.licence_file, out / "BANK_LICENSES.md")
    test_set = test_episodes(cfg)
    rows: dict[str, list[list[str]]] = {"train": [], "test": []}
    ep_meta = []
    total_seconds = 0.0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=episodes, desc="benchmark episodes", unit="ep")
    fps, sr = cfg.fps, cfg.sample_rate
    for i in range(episodes):
        ep = make_episode(i, cfg, sound_bank)
        split = "test" if i in test_set else "train"
        frames = render_frames(ep)
        mix = ep.mix
        stem = out / "episodes" / ep.uid
        write_video(stem.with_suffix(".mp4"), frames, fps, mix, sr)
        for name in STEMS:
            _write_wav(stem.parent / f"{ep.uid}.{name}.wav", ep.stems[name], sr)
        _write_wav(stem.parent / f"{ep.uid}.mix.wav", mix, sr)
        tr = ep.trajectory
        np.savez_compressed(stem.parent / f"{ep.uid}.scene.npz", camera=tr.camera, hand=tr.hand,
                            objects=tr.objects, held=tr.held)
        duration = ep.n_frames / fps
        total_seconds += duration
        ambient = {"kind": ep.ambient_kind, "level_db": round(ep.ambient_db, 3),
                   "drift_db": round(ep.ambient_drift_db, 3), "quiet": ep.quiet, "flags": ep.flags}
        clip_list = []
        for a in ep.actions:
            f0 = a.frame - cfg.clip_frames // 2
            s0 = frame_to_sample(f0, fps, sr)
            s1 = s0 + cfg.clip_samples
            cid = clip_id(ep.uid, a.index)
            text, verb, noun = narration(a.action, ep.objects[a.object].kind)
            write_video(out / "clips" / ep.uid / f"{cid}.mp4", frames[f0 : f0 + cfg.clip_frames], fps, mix[s0:s1],
                        sr)
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
                "ambient": ambient,
                "mix": "mix.wav == (action.wav + ambient.wav) + offscreen.wav, summed in float32",
            }, indent=1))
            t_narr = start + cfg.clip_seconds / 2
            rows[split].append([
                ep.uid, f"{duration:.6f}", NARRATION_SOURCE, str(a.index), f"{t_narr:.6f}", f"{start:.6f}",
                f"{start + cfg.clip_seconds:.6f}", text, f"['{verb}']", f"['{noun}']", "1",
                f"{ep.uid}/{cid}.mp4", *(str(ep.flags[c]) for c in FLAG_COLUMNS),
            ])
            clip_list.append(cid)
        contacts = detect_contacts(tr, ep.objects)
        (stem.parent / f"{ep.uid}.events.json").write_text(json.dumps({
            "video_uid": ep.uid, "split": split, "duration": duration, "n_frames": ep.n_frames, "fps": fps,
            "sample_rate": sr, "num_samples": int(mix.size), "surface": ep.surface, "ambient": ambient,
            "stem_scale": ep.scale,
            "objects": [asdict(o) for o in ep.objects],
            "actions": [{"index": a.index, "action": a.action, "object": a.object, "frame": a.frame,
                         "time": round(a.frame / fps, 6), "events": list(a.events), "clip_id": clip_id(ep.uid, a.index)}
                        for a in ep.actions],
            "events": [_event_json(e, 0, 0, sr) for e in ep.events],
            "contacts": [asdict(c) for c in contacts],
        }, indent=1))
        ep_meta.append({"video_uid": ep.uid, "split": split, "duration": duration, "surface": ep.surface,
                        "ambient": ambient, "objects": [o.kind for o in ep.objects], "clips": clip_list})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    for name, data in (("train", rows["train"]), ("test", rows["test"]), ("all", rows["train"] + rows["test"])):
        with open(out / f"{name}.tsv", "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(EGO4D_COLUMNS)
            w.writerows(sorted(data, key=lambda r: (r[0], int(r[3]))))
    (out / "benchmark.json").write_text(json.dumps({
        "format": "action2sound ambient-aware benchmark v1",
        "seed": seed, "settings": {k: v for k, v in asdict(cfg).items() if k != "seed"},
        "bank": sound_bank.name, "licence": sound_bank.licence,
        "kinds": list(sound_bank.kinds), "actions": list(ACTIONS), "ambient_kinds": list(sound_bank.ambient_kinds),
        "clip_root": "clips", "stems": list(STEMS), "stem_format": "32-bit float WAV, mono",
        "mix": "mix == (action + ambient) + offscreen, summed in float32 (exact); the mp4 sound is that mix in AAC",
        "event_sample": "round(frame * sample_rate / fps)",
        "episodes": ep_meta,
    }, indent=1))
    n_train, n_test = len(rows["train"]), len(rows["test"])
    return BenchmarkSummary(out, episodes, n_train + n_test, n_train, n_test, total_seconds,
                            time.perf_counter() - t_start)


def stems_digest(root: str | Path) -> str:
    """SHA-256 over every stem, events file and scene file of a built benchmark (not the mp4s, which are lossy)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(list((root / "episodes").glob("*.wav")) + list((root / "episodes").glob("*.json"))
                    + list((root / "groundtruth").rglob("*.wav")) + list((root / "groundtruth").rglob("*.json"))):
        h.update(p.relative_to(root).as_posix().encode())
        if p.suffix == ".wav":
            h.update(soundfile.read(str(p), dtype="float32")[0].tobytes())
        else:
            h.update(p.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ClipGroundTruth:
    """A clip's ground truth as written: float32 stems [samples], the mix, and the events."""

    action: np.ndarray
    ambient: np.ndarray
    offscreen: np.ndarray
    mix: np.ndarray
    sample_rate: int
    events: list[dict]


def load_clip_groundtruth(folder: str | Path) -> ClipGroundTruth:
    """Read groundtruth/<clip_id>/ -> ClipGroundTruth."""
    folder = Path(folder)
    if not (folder / "events.json").is_file():
        raise Action2SoundError(f"{folder} is not a benchmark ground-truth folder (no events.json); pass "
                                "OUT/groundtruth/<clip_id>")
    waves, rate = {}, 0
    for name in (*STEMS, "mix"):
        waves[name], rate = soundfile.read(str(folder / f"{name}.wav"), dtype="float32")
    return ClipGroundTruth(waves["action"], waves["ambient"], waves["offscreen"], waves["mix"], rate,
                           json.loads((folder / "events.json").read_text()))
