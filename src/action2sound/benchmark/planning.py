"""Episode planning: where the objects lie, how the camera drifts, and what the hand does frame by frame.

The planner writes the fingertip's and the objects' per-frame positions action by action (approach,
contact, release) and records an event on the frame each contact is drawn; `detect_contacts` reads the
contacts back from the drawn geometry alone, so the plan can be checked against the picture. Positions are
world pixels; z is the height above the surface (0 = on it). Every random choice comes from the `rng`
argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import picture

GRIP_Z = 0.12  # hand height while holding an object: gripping is not a sounding contact
_Z_EPS = 1e-9


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



def _ease(kind: str, u: float) -> float:
    if kind == "in":  # accelerating: a strike coming down
        return u * u
    if kind == "out":
        return 1.0 - (1.0 - u) ** 2
    if kind == "linear":
        return u
    return u * u * (3.0 - 2.0 * u)


class Overflow(Exception):
    """The action does not fit in what is left of the episode."""


class Planner:
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
            raise Overflow
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
            raise Overflow
        for k in range(1, frames + 1):
            self.obj[obj, self.f + k] = (x, y, h * (1.0 - (k / frames) ** 2))
        self.holding = -1
        return self.f + frames


def _point_on(o: SceneObject, rng: np.random.Generator, spread: float = 0.5) -> tuple[float, float]:
    a = rng.uniform(0, 2 * math.pi)
    r = spread * math.sqrt(rng.uniform(0, 1))
    return o.x + r * o.rx * math.cos(a), o.y + r * o.ry * math.sin(a)


def plan_action(p: Planner, o: SceneObject, action: str, rng: np.random.Generator, size: int) -> None:
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


def camera_path(n: int, fps: float, margin: int, rng: np.random.Generator, size: int) -> np.ndarray:
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


def place_objects(kinds: list[str], size: int, margin: int, rng: np.random.Generator) -> list[SceneObject]:
    objects: list[SceneObject] = []
    for kind in kinds:
        look = picture.look_for_kind(kind)
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

