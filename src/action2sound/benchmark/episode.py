"""One episode of the ambient-aware benchmark: scene, plan, events and stems, made in numbered steps.

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

Episode i depends only on (seed, i): six random streams are spawned from them, one per concern (scene, plan,
contact sounds, ambient, off-screen sounds, length), so changing how one concern draws leaves the others be.
Layout v2 adds a seventh for its pauses: the plan draws what it drew for v1, with a few long rests inserted
(so fewer actions fit), which gives v2's clips with no visible contact somewhere to be. Nothing here writes
files (that is `writer.py`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import Action2SoundError
from . import picture
from . import sound as synth
from .banks import ProceduralBank, RecordingBank
from .config import ACTIONS, AMBIENT_ORDER_STREAM, PAUSE_STREAM, BenchmarkConfig, episode_uid, frame_to_sample
from .planning import Overflow, Planner, SceneObject, Trajectory, camera_path, place_objects, plan_action

# 1. The scene. The view of `size` px looks into a larger world: a margin on every side for the camera to drift.
MARGIN_FRACTION = 0.1  # of the view size
MIN_MARGIN_PX = 4
OBJECT_COUNT = (3, 6)  # objects on the surface: drawn from [low, high)
HAND_REST = (0.62, 0.84, 0.8)  # the resting fingertip: x, y as fractions of the view (lower right), z height

# 2. The plan.
LEAD_IN_S = (0.0, 0.8)  # idle time before the first action, beyond half a clip
ACTION_WEIGHTS = (0.35, 0.25, 0.2, 0.2)  # how often each of ACTIONS is chosen
IDLE_OFFSET = ((-0.1, 0.1), (-0.06, 0.02), (-0.1, 0.2))  # where the hand idles around its rest: x, y (view
#                                                          fractions), z
IDLE_MOVE_S = (0.3, 0.9)  # back to the idle point after an action
IDLE_WAIT_S = (0.0, 1.2)  # then waiting there
# Layout v2 only: now and then the hand rests longer than a clip, so some clips can show no contact at all.
PAUSE_SHARE = 0.2  # of the actions, followed by a pause
PAUSE_CLIPS = (1.0, 1.8)  # its length in clip lengths

# 3. Contact sounds: one small room per episode, its reverberation added to every contact.
ROOM_T60_S = (0.25, 0.5)
ROOM_WET = (0.05, 0.15)

# 4. Off-screen sounds.
OFFSCREEN_EVERY_S = 9.0  # one per this many seconds on average (Poisson), at least one per episode
OFFSCREEN_EDGE_S = 0.5  # none starts closer than this to the episode's ends
OFFSCREEN_CLEARANCE_S = 0.35  # none starts closer than this to a visible contact (sustained ones whole)
OFFSCREEN_GAP_S = 0.1  # between one off-screen sound's tail and the next one's onset
OFFSCREEN_TRIES = 50  # random draws per wanted sound before settling for fewer
OFFSCREEN_GAIN = (0.12, 0.35)

# 5. The ambient bed.
QUIET_EVERY = 4  # episodes 1, 5, 9, ... are quiet: a quiet condition exists whenever N >= 2
QUIET_DB = (-66.0, -58.0)  # ambient RMS, dBFS
AMBIENT_DB = (-38.0, -22.0)
AMBIENT_DRIFT_DB = (1.5, 4.0)  # how far the level wanders around its mean
AMBIENT_DRIFT_PERIODS_S = (15.0, 60.0)
AMBIENT_DRIFT_TERMS = 2

# 6. Headroom.
HEADROOM = 0.95  # the mix never peaks above this (all stems share the scale, so their sum stays exact)

Bank = ProceduralBank | RecordingBank


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
    """One narrated action (the v1 layout's clip is centred on its first contact)."""

    index: int
    action: str
    object: int
    frame: int  # the first contact
    events: tuple[int, ...]


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
    renderer: picture.SceneRenderer = field(repr=False)

    @property
    def mix(self) -> np.ndarray:
        """(action + ambient) + offscreen, float32 [samples]."""
        return self.stems["action"] + self.stems["ambient"] + self.stems["offscreen"]


@dataclass(frozen=True)
class _Scene:
    surface: str
    objects: list[SceneObject]
    renderer: picture.SceneRenderer
    camera: np.ndarray  # int64 [T, 2]
    margin: int


@dataclass(frozen=True)
class _Ambient:
    kind: str
    level_db: float
    drift_db: float
    quiet: bool
    stem: np.ndarray  # float64 [samples]


def _seed_rngs(seed: int, index: int, count: int) -> list[np.random.Generator]:
    # Episode i's content depends only on (seed, i): building more episodes never changes the first ones.
    ss = np.random.SeedSequence(seed, spawn_key=(index,))
    return [np.random.default_rng(s) for s in ss.spawn(count)]


def make_episode(index: int, cfg: BenchmarkConfig, bank: Bank) -> Episode:
    """Plan, lay out and sound one episode (no files written)."""
    r_scene, r_plan, r_sound, r_amb, r_off, r_len = _seed_rngs(cfg.seed, index, 6)
    n_frames = int(round(r_len.uniform(*cfg.episode_seconds) * cfg.fps))
    n_samples = frame_to_sample(n_frames, cfg.fps, cfg.sample_rate)

    # 1. The scene: surface, objects, hand, camera.
    scene = _lay_out_scene(n_frames, cfg, bank, r_scene)
    # 2. The plan: actions one after another, each fully inside the episode with room for its clip.
    r_pause = (np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(PAUSE_STREAM, index)))
               if cfg.layout == "v2" else None)
    traj, actions, planned = _plan_actions(index, n_frames, cfg, scene, r_plan, r_pause)
    # 3. The sounds of the visible contacts, each starting on its frame's sample.
    action_stem, events = _sound_contacts(planned, actions, scene.objects, n_samples, cfg, bank, r_sound)
    # 4. Off-screen sounds, away from the visible contacts so every onset stays attributable.
    off_stem, off_events = _sound_offscreen(events, n_frames, n_samples, cfg, bank, r_off)
    events = sorted(events + off_events, key=lambda e: (e.sample, e.object))
    # 5. The ambient bed: one kind per episode, an episode-specific level that drifts slowly.
    amb = _ambient_bed(index, n_samples, cfg, bank, r_amb)
    # 6. Headroom: one scale for all stems keeps their sum exact; then float32 once, for good.
    mix = action_stem + amb.stem + off_stem
    peak = float(np.max(np.abs(mix)))
    scale = min(1.0, HEADROOM / peak) if peak > 0 else 1.0
    stems = {"action": (action_stem * scale).astype(np.float32),
             "ambient": (amb.stem * scale).astype(np.float32),
             "offscreen": (off_stem * scale).astype(np.float32)}
    if scale != 1.0:
        events = [Event(**{**asdict(e), "gain": e.gain * scale}) for e in events]
    return Episode(episode_uid(cfg.seed, index), index, n_frames, scene.surface, tuple(scene.objects), traj,
                   tuple(actions), tuple(events), amb.kind, float(amb.level_db + 20 * math.log10(scale)),
                   float(amb.drift_db), amb.quiet, bank.flags(amb.kind), stems, scale, scene.renderer)


def _lay_out_scene(n_frames: int, cfg: BenchmarkConfig, bank: Bank, rng: np.random.Generator) -> _Scene:
    """Surface, objects (kinds from the bank), their sprites, the hand's look and the camera's path."""
    S = cfg.size
    margin = max(MIN_MARGIN_PX, int(round(MARGIN_FRACTION * S)))
    world_px = S + 2 * margin
    surface = picture.SURFACES[int(rng.integers(len(picture.SURFACES)))]
    world = picture.surface_texture(surface, world_px, world_px, rng)
    kinds = list(bank.kinds)
    count = int(rng.integers(*OBJECT_COUNT))
    # Distinct kinds first, so a scene has as many different materials as the bank allows.
    chosen = list(rng.choice(kinds, size=min(count, len(kinds)), replace=False))
    chosen += list(rng.choice(kinds, size=count - len(chosen)))
    objects = place_objects([str(k) for k in chosen], S, margin, rng)
    props = []
    for o in objects:
        sprite, anchor = picture.object_sprite(picture.look_for_kind(o.kind), o.rx, o.ry, rng)
        props.append(picture.Prop(sprite, anchor, o.x, o.y))
    renderer = picture.SceneRenderer(world, props, S, picture.hand_look(rng))
    camera = camera_path(n_frames, cfg.fps, margin, rng, S)
    return _Scene(surface, objects, renderer, camera, margin)


def _plan_actions(index: int, n_frames: int, cfg: BenchmarkConfig, scene: _Scene, rng: np.random.Generator,
                  pause_rng: np.random.Generator | None) -> tuple[Trajectory, list[NarratedAction], list[dict]]:
    """Actions until the episode is full -> (trajectories, narrated actions, the planner's contact events).

    pause_rng (layout v2): after a PAUSE_SHARE of the actions the hand rests for PAUSE_CLIPS clip lengths.
    """
    S, objects = cfg.size, scene.objects
    rest = np.array([scene.margin + HAND_REST[0] * S, scene.margin + HAND_REST[1] * S, HAND_REST[2]])
    p = Planner(n_frames, cfg.fps, objects, rest)
    half = cfg.clip_frames // 2
    p.wait(half + 1 + p.n(rng.uniform(*LEAD_IN_S)))
    actions: list[NarratedAction] = []
    last = -1
    while True:
        snap = p.snapshot()
        choices = [o.index for o in objects if o.index != last] or [o.index for o in objects]
        o = objects[int(rng.choice(choices))]
        action = str(rng.choice(ACTIONS, p=ACTION_WEIGHTS))
        try:
            plan_action(p, o, action, rng, S)
            first = p.events[snap[5]]["frame"]
            # Strictly inside (one spare frame), so the clip's audio never runs past the episode's end.
            if first - half < 0 or first - half + cfg.clip_frames >= n_frames or p.f >= n_frames - 1:
                raise Overflow
        except Overflow:
            p.restore(snap)
            break
        actions.append(NarratedAction(len(actions), action, o.index, first, tuple(range(snap[5], len(p.events)))))
        last = o.index
        snap = p.snapshot()
        try:
            (x0, x1), (y0, y1), (z0, z1) = IDLE_OFFSET
            idle = rest + np.array([rng.uniform(x0, x1) * S, rng.uniform(y0, y1) * S, rng.uniform(z0, z1)])
            p.move(idle, p.n(rng.uniform(*IDLE_MOVE_S)))
            p.wait(p.n(rng.uniform(*IDLE_WAIT_S)))
            if pause_rng is not None and pause_rng.random() < PAUSE_SHARE:
                p.wait(p.n(pause_rng.uniform(*PAUSE_CLIPS) * cfg.clip_seconds))
        except Overflow:
            p.restore(snap)
            break
    if not actions:
        raise Action2SoundError(f"episode {index}: no action fits in {n_frames / cfg.fps:.1f} s; raise "
                                "episode_seconds (at least clip_seconds + 3 s)")
    p.hand[p.f + 1 :] = p.hand[p.f]
    return Trajectory(scene.camera, p.hand, p.obj, p.held), actions, p.events


def _sound_contacts(planned: list[dict], actions: list[NarratedAction], objects: list[SceneObject],
                    n_samples: int, cfg: BenchmarkConfig, bank: Bank, rng: np.random.Generator
                    ) -> tuple[np.ndarray, list[Event]]:
    """Every planned contact's sound, with the room's tail, from its frame's sample -> (float64 stem, events)."""
    fps, sr = cfg.fps, cfg.sample_rate
    identities = [bank.identity(o.kind, rng) for o in objects]
    room = synth.room_response(sr, rng, rng.uniform(*ROOM_T60_S))
    wet = rng.uniform(*ROOM_WET)
    stem = np.zeros(n_samples)
    events: list[Event] = []
    narration_of = {e: a.index for a in actions for e in a.events}
    for j, ev in enumerate(planned):
        dry = bank.event_sound(identities[ev["object"]], ev["action"], ev["params"], sr, rng)
        wave = synth.add_room(ev["gain"] * dry, room, wet)
        s = frame_to_sample(ev["frame"], fps, sr)
        k = min(wave.size, n_samples - s)
        stem[s : s + k] += wave[:k]
        events.append(Event(ev["frame"], s, ev["frame"] / fps, ev["object"], objects[ev["object"]].kind,
                            ev["action"], True, float(ev["gain"]), float(ev["params"].get("duration", 0.0)),
                            wave.size / sr, narration_of[j]))
    return stem, events


def _sound_offscreen(contacts: list[Event], n_frames: int, n_samples: int, cfg: BenchmarkConfig, bank: Bank,
                     rng: np.random.Generator) -> tuple[np.ndarray, list[Event]]:
    """Off-screen sounds clear of the visible contacts and of one another -> (float64 stem, events)."""
    fps, sr = cfg.fps, cfg.sample_rate
    stem = np.zeros(n_samples)
    events: list[Event] = []
    busy = [(e.time, e.time + e.duration) for e in contacts]  # visible contacts, sustained ones whole
    dur = n_frames / fps
    wanted = max(1, int(rng.poisson(dur / OFFSCREEN_EVERY_S)))
    taken: list[tuple[float, float]] = []
    for _ in range(wanted * OFFSCREEN_TRIES):
        if len(taken) >= wanted:
            break
        t = rng.uniform(OFFSCREEN_EDGE_S, dur - OFFSCREEN_EDGE_S)
        frame = int(round(t * fps))
        t = frame / fps
        if any(a - OFFSCREEN_CLEARANCE_S < t < b + OFFSCREEN_CLEARANCE_S for a, b in busy):
            continue
        dry, kind, act = bank.offscreen(sr, rng)
        gain = rng.uniform(*OFFSCREEN_GAIN)
        wave = synth.distant(gain * dry, sr, rng)
        # Off-screen sounds never overlap one another (tails included): each one's onset stays clean.
        if any(t < b + OFFSCREEN_GAP_S and a < t + wave.size / sr + OFFSCREEN_GAP_S for a, b in taken):
            continue
        s = frame_to_sample(frame, fps, sr)
        k = min(wave.size, n_samples - s)
        stem[s : s + k] += wave[:k]
        taken.append((t, t + wave.size / sr))
        events.append(Event(frame, s, t, -1, kind, act, False, float(gain), 0.0, wave.size / sr, -1))
    return stem, events


def _ambient_bed(index: int, n_samples: int, cfg: BenchmarkConfig, bank: Bank, rng: np.random.Generator
                 ) -> _Ambient:
    """The episode's ambient: every QUIET_EVERY-th a faint room tone, the others cycle through the bank's kinds."""
    quiet = index % QUIET_EVERY == 1
    if quiet:
        kind = bank.quiet_kind(rng)
        level_db = rng.uniform(*QUIET_DB)
    else:
        # One shuffled order of the kinds per build, walked by the loud episodes: neighbours differ.
        order_rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(AMBIENT_ORDER_STREAM,)))
        order = list(order_rng.permutation(len(bank.ambient_kinds)))
        loud_index = index - (index + QUIET_EVERY - 1) // QUIET_EVERY  # count of non-quiet episodes before
        kind = bank.ambient_kinds[order[loud_index % len(order)]]
        level_db = rng.uniform(*AMBIENT_DB)
    drift_db = rng.uniform(*AMBIENT_DRIFT_DB)
    bed = bank.ambient(kind, n_samples, cfg.sample_rate, rng)
    curve = level_db + drift_db * synth.slow_curve(n_samples, cfg.sample_rate, rng, AMBIENT_DRIFT_PERIODS_S,
                                                   terms=AMBIENT_DRIFT_TERMS)
    return _Ambient(kind, level_db, drift_db, quiet, bed * 10.0 ** (curve / 20.0))


def render_frames(ep: Episode, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Frames [start, stop) of an episode -> uint8 [T, S, S, 3]."""
    stop = ep.n_frames if stop is None else stop
    tr = ep.trajectory
    out = np.empty((stop - start, ep.renderer.size, ep.renderer.size, 3), dtype=np.uint8)
    for j, k in enumerate(range(start, stop)):
        out[j] = ep.renderer.frame(tr.camera[k], tr.hand[k], tr.objects[:, k])
    return out
