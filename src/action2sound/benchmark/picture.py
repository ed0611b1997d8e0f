"""Pictures for the ambient-aware benchmark: surfaces, object sprites, shadows and the actor's hand.

A textured surface seen from above, object sprites whose look (shape, colour, pattern) follows their kind,
soft shadows that separate as things are lifted, and a hand on an arm that enters from the bottom of the
view. Everything is drawn with numpy and Pillow; nothing here knows about time, sound or files. Every
random choice comes from the `rng` argument.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Look:
    """How a kind of object looks from above."""

    shape: str  # "disc", "rect", "rounded", "pan" (a disc with a handle)
    colour: RGB
    accent: RGB
    pattern: str  # "grain", "metal", "glass", "rim", "plain", "stripes", "dots", "speckle"
    alpha: float  # 1 = opaque; glass lets the surface show through
    aspect: float  # height / width of the footprint


LOOKS: dict[str, Look] = {
    "wood": Look("rect", (164, 112, 62), (112, 70, 34), "grain", 1.0, 0.55),
    "metal": Look("pan", (168, 172, 180), (70, 72, 80), "metal", 1.0, 1.0),
    "glass": Look("disc", (150, 215, 230), (245, 255, 255), "glass", 0.55, 1.0),
    "ceramic": Look("disc", (240, 236, 226), (50, 80, 170), "rim", 1.0, 1.0),
    "plastic": Look("rounded", (222, 48, 40), (250, 235, 90), "plain", 1.0, 0.7),
}


def look_for_kind(kind: str) -> Look:
    """The look of `kind`: a fixed table for the five materials, else derived from the name's hash."""
    if kind in LOOKS:
        return LOOKS[kind]
    # A stable hash (Python's hash() is salted per process): the same name looks the same in every run.
    h = hashlib.sha256(kind.encode()).digest()
    hue = h[0] / 255.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.45 + 0.4 * h[1] / 255.0, 0.55 + 0.4 * h[2] / 255.0)
    ar, ag, ab = colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.6, 0.35 + 0.5 * h[3] / 255.0)
    shape = ("disc", "rect", "rounded", "disc")[h[4] % 4]
    pattern = ("stripes", "dots", "speckle", "plain")[h[5] % 4]
    aspect = 1.0 if shape == "disc" else 0.55 + 0.4 * h[6] / 255.0
    return Look(shape, (int(r * 255), int(g * 255), int(b * 255)), (int(ar * 255), int(ag * 255), int(ab * 255)),
                pattern, 1.0, aspect)


def _value_noise(h: int, w: int, cell: float, rng: np.random.Generator, stretch: float = 1.0) -> np.ndarray:
    """Smooth noise in about [-1, 1] with features of ~cell px (x `stretch` along x) -> float32 [h, w]."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / (cell * stretch)) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 1.5


SURFACES = ("wood", "tiles", "fabric", "stone")


def surface_texture(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A table or floor seen from above: wood planks, tiles, fabric or stone -> uint8 [h, w, 3]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    scale = max(h, w) / 300.0
    if kind == "wood":
        base = np.array(rng.choice([[186, 140, 92], [150, 104, 64], [205, 170, 120], [120, 84, 56]]),
                        np.float32)
        plank = max(8.0, rng.uniform(40.0, 70.0) * scale)
        idx = np.floor(y / plank)
        shade = 1.0 + 0.08 * np.sin(idx * 12.9898 + rng.uniform(0, 6.3))
        # Grain runs along the planks: noise stretched along x bends the stripes only gently.
        warp = _value_noise(h, w, 12 * scale, rng, stretch=8.0) * 2.5
        grain = np.sin((y + warp * 4 * scale) * (2 * math.pi / max(2.0, 4.0 * scale)) + idx * 3.1)
        v = shade * (0.9 + 0.06 * grain + 0.05 * _value_noise(h, w, 3 * scale, rng, stretch=6.0))
        gap = (np.mod(y, plank) < max(1.0, 1.5 * scale)).astype(np.float32)
        img = base * v[..., None] * (1.0 - 0.45 * gap[..., None])
    elif kind == "tiles":
        base = np.array(rng.choice([[225, 225, 218], [196, 214, 222], [232, 218, 196], [210, 210, 210]]),
                        np.float32)
        tile = max(8.0, rng.uniform(35.0, 60.0) * scale)
        ix, iy = np.floor(x / tile), np.floor(y / tile)
        jitter = 1.0 + 0.05 * np.sin(ix * 7.13 + iy * 3.71 + rng.uniform(0, 6.3))
        v = jitter * (0.95 + 0.04 * _value_noise(h, w, 4 * scale, rng))
        grout = ((np.mod(x, tile) < max(1.0, 2 * scale)) | (np.mod(y, tile) < max(1.0, 2 * scale)))
        img = base * v[..., None]
        img[grout] = base * 0.55
    elif kind == "fabric":
        c1 = np.array(rng.choice([[200, 40, 40], [40, 90, 170], [40, 130, 70], [90, 60, 130]]), np.float32)
        c2 = np.array([238, 234, 226], np.float32)
        band = max(4.0, rng.uniform(14.0, 26.0) * scale)
        sx = (np.floor(x / band) % 2).astype(np.float32)
        sy = (np.floor(y / band) % 2).astype(np.float32)
        mix = (sx + sy) / 2.0  # gingham: 0 white, 0.5 tint, 1 full colour
        weave = 0.93 + 0.07 * (((np.floor(x / max(1.0, 1.5 * scale)) + np.floor(y / max(1.0, 1.5 * scale)))
                                 % 2))
        img = (c2 * (1 - mix[..., None]) + c1 * mix[..., None]) * weave[..., None]
        img *= (0.96 + 0.04 * _value_noise(h, w, 20 * scale, rng))[..., None]
    elif kind == "stone":
        base = np.array(rng.choice([[150, 150, 145], [120, 118, 112], [175, 168, 155]]), np.float32)
        v = 0.9 + 0.1 * _value_noise(h, w, 40 * scale, rng) + 0.06 * _value_noise(h, w, 6 * scale, rng)
        speck = rng.random((h, w)).astype(np.float32)
        v = v - 0.25 * (speck > 0.985) + 0.2 * (speck < 0.01)
        img = base * v[..., None]
    else:
        raise ValueError(f"unknown surface {kind!r}; choose one of {SURFACES}")
    return np.clip(img, 0, 255).astype(np.uint8)


_SS = 3  # supersampling factor for sprites: draw large, shrink with a good filter -> smooth edges


def object_sprite(look: Look, rx: float, ry: float, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
    """An object seen from above with footprint half-sizes rx, ry px -> (RGBA uint8 [h, w, 4], centre (x, y))."""
    pad = 2.0 + (1.2 * rx if look.shape == "pan" else 0.0)
    W, H = int(math.ceil(2 * (rx + pad))) * _SS, int(math.ceil(2 * (ry + pad))) * _SS
    if look.shape == "pan":
        H = max(H, W)
    cx, cy = W / 2.0, H / 2.0
    R, Q = rx * _SS, ry * _SS
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    dx, dy = (xx - cx) / R, (yy - cy) / Q
    if look.shape in ("disc", "pan"):
        inside = dx ** 2 + dy ** 2 <= 1.0
        edge = np.sqrt(dx ** 2 + dy ** 2)
    elif look.shape == "rect":
        inside = (np.abs(dx) <= 1.0) & (np.abs(dy) <= 1.0)
        edge = np.maximum(np.abs(dx), np.abs(dy))
    else:  # rounded rectangle: a superellipse
        e = np.abs(dx) ** 6 + np.abs(dy) ** 6
        inside = e <= 1.0
        edge = e ** (1 / 6)
    base = np.array(look.colour, np.float32) * rng.uniform(0.92, 1.06)
    acc = np.array(look.accent, np.float32)
    col = np.broadcast_to(base, (H, W, 3)).copy()
    alpha = np.where(inside, look.alpha, 0.0).astype(np.float32)
    if look.pattern == "grain":
        warp = _value_noise(H, W, 25 * _SS, rng) * 2.0
        g = np.sin((dy * 9 + warp) * math.pi)
        col = col * (0.88 + 0.1 * g[..., None])
        col = np.where((np.abs(g) > 0.93)[..., None], col * 0.8 + acc * 0.2, col)
    elif look.pattern == "metal":
        ang = np.arctan2(dy, dx)
        shine = 0.8 + 0.2 * np.cos(2 * ang + 0.6)
        col = col * shine[..., None]
        ring = (edge > 0.78) & (edge < 0.86)
        col[ring] = col[ring] * 0.7
        spot = np.exp(-(((dx + 0.35) ** 2 + (dy + 0.35) ** 2) / 0.03))
        col = col + 90.0 * spot[..., None]
    elif look.pattern == "glass":
        arc = (edge > 0.55) & (edge < 0.68) & (dx < -0.1) & (dy < -0.1)
        col[arc] = acc
        alpha[arc] = 0.95
        rim = inside & (edge > 0.9)
        col[rim] = base * 0.7
        alpha[rim] = 0.9
    elif look.pattern == "rim":
        ring = (edge > 0.72) & (edge < 0.8)
        col[ring] = acc
        dots = (edge > 0.84) & (edge < 0.94) & (np.sin(np.arctan2(dy, dx) * 12) > 0.6)
        col[dots] = acc
        col = col * (1.0 - 0.08 * np.clip(edge - 0.6, 0, 1))[..., None]
    elif look.pattern == "plain":
        lid = (edge > 0.8) & (edge < 0.86)
        col[lid] = col[lid] * 0.75
        col = col * (1.0 - 0.12 * (dy[..., None] + 1) / 2)
    elif look.pattern == "stripes":
        col = np.where((np.sin(dx * 10) > 0.3)[..., None], acc, col)
    elif look.pattern == "dots":
        col = np.where(((np.sin(dx * 14) * np.sin(dy * 14)) > 0.6)[..., None], acc, col)
    elif look.pattern == "speckle":
        sp = rng.random((H, W)) > 0.93
        col[sp] = acc
    outline = inside & (edge > 1.0 - 2.0 * _SS / max(R, Q))
    col[outline] = col[outline] * 0.55
    if look.shape == "pan":  # a handle sticking out to one side
        hx0 = cx + R * 0.95
        handle = (xx >= hx0) & (xx <= cx + R * 2.05) & (np.abs(yy - cy) <= Q * 0.16)
        col[handle] = acc
        alpha[handle] = 1.0
    rgba = np.concatenate([np.clip(col, 0, 255), alpha[..., None] * 255.0], axis=-1).astype(np.uint8)
    small = Image.fromarray(rgba, "RGBA").resize((W // _SS, H // _SS), Image.LANCZOS)
    return np.asarray(small), (W // _SS // 2, H // _SS // 2)


def shadow_mask(rgba: np.ndarray, strength: float = 0.45) -> Image.Image:
    """A soft shadow (an 8-bit mask) from a sprite's alpha."""
    a = Image.fromarray(rgba[..., 3], "L").filter(ImageFilter.GaussianBlur(max(1.0, rgba.shape[0] / 14)))
    return a.point(lambda v: int(v * strength))


@dataclass(frozen=True)
class HandLook:
    """Skin and sleeve colours of the actor's arm."""

    skin: RGB
    sleeve: RGB

    @property
    def outline(self) -> RGB:
        """The darker rim drawn around the skin."""
        return tuple(int(c * 0.6) for c in self.skin)


def hand_look(rng: np.random.Generator) -> HandLook:
    """A random skin tone (or glove) and sleeve colour."""
    skins = [(241, 194, 160), (224, 172, 128), (198, 134, 96), (141, 85, 55), (98, 60, 40), (235, 205, 70)]
    sleeves = [(40, 40, 48), (70, 100, 150), (150, 40, 40), (60, 110, 70), (200, 200, 205), (120, 90, 60)]
    return HandLook(tuple(skins[int(rng.integers(len(skins)))]), tuple(sleeves[int(rng.integers(len(sleeves)))]))


def _limb(draw: ImageDraw.ImageDraw, a, b, width: float, fill) -> None:
    """A thick line with round ends."""
    w = max(1, int(round(width)))
    draw.line([a, b], fill=fill, width=w)
    r = w / 2.0
    for x, y in (a, b):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def draw_hand(img: Image.Image, tip: tuple[float, float], z: float, base: tuple[float, float], size: int,
              look: HandLook) -> None:
    """Draw an arm from `base` to a hand whose index fingertip is at `tip` (view px), `z` above the surface."""
    s = size * (1.0 + 0.45 * z)  # nearer the camera when lifted: bigger
    tx, ty = tip
    bx, by = base
    L = math.hypot(tx - bx, ty - by) or 1.0
    ux, uy = (tx - bx) / L, (ty - by) / L  # along the arm, towards the fingertip
    px, py = -uy, ux  # across the hand
    finger = 0.085 * s
    r = 0.062 * s  # palm radius
    pc = (tx - ux * (finger + 0.7 * r), ty - uy * (finger + 0.7 * r))
    wrist = (pc[0] - ux * 0.9 * r, pc[1] - uy * 0.9 * r)
    # (offset across, length, width) of the four fingers; the index finger reaches the contact point.
    fingers = ((-0.75, 1.0, 0.03), (0.0, 0.9, 0.032), (0.65, 0.8, 0.03), (1.15, 0.62, 0.026))
    roots = [(pc[0] + px * k * r * 0.55 + ux * 0.5 * r, pc[1] + py * k * r * 0.55 + uy * 0.5 * r)
             for k, _, _ in fingers]
    tips = [(x + ux * finger * ln, y + uy * finger * ln) for (x, y), (_, ln, _) in zip(roots, fingers)]
    tips[0] = (tx, ty)
    thumb_root = (pc[0] - px * 0.8 * r, pc[1] - py * 0.8 * r)
    thumb_tip = (thumb_root[0] - px * 0.5 * r + ux * 0.9 * r, thumb_root[1] - py * 0.5 * r + uy * 0.9 * r)

    def shape_at(draw, fill, shift=(0.0, 0.0), k: float = 1.0, grow: float = 0.0) -> None:
        """The arm and hand, moved by `shift` and scaled by k (for the small shadow canvas)."""
        o = lambda p: ((p[0] + shift[0]) * k, (p[1] + shift[1]) * k)  # noqa: E731
        _limb(draw, o((bx, by)), o(wrist), (0.13 * s + grow) * k, fill if isinstance(fill, int) else look.sleeve)
        (cx, cy), rr = o(pc), (r + grow / 2) * k
        draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=fill)
        for root, end, (_, _, w) in zip(roots, tips, fingers):
            _limb(draw, o(root), o(end), (w * s + grow) * k, fill)
        _limb(draw, o(thumb_root), o(thumb_tip), (0.032 * s + grow) * k, fill)

    # Shadow first, offset by the hand's height (light from the upper left), then an outline, then the hand.
    off = (0.07 * size * z + 0.01 * size, 0.05 * size * z + 0.01 * size)
    # Drawn at a quarter of the size and scaled up: the bilinear upscale is the blur, at 1/16 of the cost.
    q = 4
    shade = Image.new("L", (img.width // q + 1, img.height // q + 1), 0)
    shape_at(ImageDraw.Draw(shade), 90, off, 1.0 / q)
    shade = shade.resize((shade.width * q, shade.height * q), Image.BILINEAR).crop((0, 0, img.width, img.height))
    img.paste((0, 0, 0), (0, 0), shade)
    draw = ImageDraw.Draw(img)
    shape_at(draw, look.outline, grow=max(1.0, 0.008 * s))
    shape_at(draw, look.skin)


@dataclass(frozen=True)
class Prop:
    """An object placed in the world for drawing: its sprite and its resting centre (world px)."""

    sprite: np.ndarray  # RGBA uint8 [h, w, 4]
    anchor: tuple[int, int]  # sprite px of the footprint centre
    x: float
    y: float


class SceneRenderer:
    """Draws one episode's frames: the surface and its objects, lifted objects with shadows, the hand."""

    def __init__(self, world: np.ndarray, props: list[Prop], size: int, hand: HandLook):
        self.world = world
        self.props = props
        self.size = size
        self.hand = hand
        self._sprites = [Image.fromarray(p.sprite, "RGBA") for p in props]
        self._shadows = [shadow_mask(p.sprite) for p in props]
        # Objects rest most of the time: composite them into the surface once (and once more without each
        # object, for the frames where that one is lifted), so a frame is mostly a crop.
        self._static = self._composite(range(len(props)))
        self._without: dict[int, Image.Image] = {}
        # The arm enters from below the view, right of centre (a right hand).
        self.arm_base = (0.68 * size, 1.18 * size)

    def _ground_offset(self, z: float) -> tuple[float, float]:
        return (0.012 * self.size + 0.08 * self.size * z, 0.012 * self.size + 0.06 * self.size * z)

    def _composite(self, which) -> Image.Image:
        img = Image.fromarray(self.world)
        ox, oy = self._ground_offset(0.0)
        for o in which:
            p = self.props[o]
            x0, y0 = round(p.x - p.anchor[0]), round(p.y - p.anchor[1])
            img.paste((0, 0, 0), (round(x0 + ox), round(y0 + oy)), self._shadows[o])
            img.paste(self._sprites[o], (x0, y0), self._sprites[o])
        return img

    def frame(self, camera: tuple[int, int], hand: np.ndarray, objects: np.ndarray) -> np.ndarray:
        """One frame: camera top-left (world px), fingertip (x, y, z), objects [n, 3] -> uint8 [S, S, 3]."""
        moved = [o for o, p in enumerate(self.props)
                 if objects[o, 2] > 0 or objects[o, 0] != p.x or objects[o, 1] != p.y]
        if not moved:
            bg = self._static
        elif len(moved) == 1:
            o = moved[0]
            if o not in self._without:
                self._without[o] = self._composite([j for j in range(len(self.props)) if j != o])
            bg = self._without[o]
        else:
            bg = self._composite([j for j in range(len(self.props)) if j not in moved])
        cx, cy = int(camera[0]), int(camera[1])
        view = bg.crop((cx, cy, cx + self.size, cy + self.size))
        for o in sorted(moved, key=lambda j: objects[j, 2]):
            p, (x, y, z) = self.props[o], objects[o]
            ox, oy = self._ground_offset(z)
            shadow = self._shadows[o]
            view.paste((0, 0, 0), (round(x - cx - p.anchor[0] + ox), round(y - cy - p.anchor[1] + oy)), shadow)
            s = 1.0 + 0.35 * z  # nearer the camera when lifted: bigger
            sprite = self._sprites[o]
            if s != 1.0:
                sprite = sprite.resize((max(1, round(sprite.width * s)), max(1, round(sprite.height * s))),
                                       Image.BILINEAR)
            view.paste(sprite, (round(x - cx - p.anchor[0] * s), round(y - cy - p.anchor[1] * s)), sprite)
        draw_hand(view, (hand[0] - cx, hand[1] - cy), float(hand[2]), self.arm_base, self.size, self.hand)
        return np.asarray(view)
