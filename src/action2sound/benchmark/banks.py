"""Sound banks: where the benchmark's sounds come from, procedural synthesis or a folder of real recordings.

A bank gives each object an acoustic identity, the dry sound of an action on it (unit peak, onset at
sample 0), off-screen sounds, ambient beds and the Ego4D-Sounds flags an ambient kind raises. `open_bank`
picks one from the `--bank` value. (Building a folder bank from Debian packages is `soundbank.py`.)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import Action2SoundError
from . import sound
from .config import ACTIONS, FLAG_COLUMNS

AUDIO_EXTENSIONS = (".wav", ".ogg", ".flac", ".mp3", ".m4a", ".aiff", ".aif", ".opus")


class ProceduralBank:
    """Physically-motivated synthesis: modal impacts, friction scrapes, granular shakes, shaped-noise beds."""

    name = "procedural"
    licence = "procedurally synthesised by action2sound; no third-party recordings"
    kinds = tuple(sound.MATERIALS)
    ambient_kinds = sound.AMBIENT_KINDS

    def identity(self, kind: str, rng: np.random.Generator) -> sound.ModalBody:
        return sound.modal_body(sound.MATERIALS[kind], rng)

    def event_sound(self, body: sound.ModalBody, action: str, params: dict, sr: int,
                    rng: np.random.Generator) -> np.ndarray:
        """The dry, unit-peak sound of `action` on `body`, onset at sample 0."""
        if action == "hit":
            return sound.impact(body, sr, rng, hardness=params["hardness"])
        if action == "scrape":
            return sound.scrape(body, sr, rng, params["duration"])
        if action == "shake":
            return sound.shake(body, sr, rng, np.asarray(params["clusters"]), params["duration"])
        if action == "drop":
            hit = sound.impact(body, sr, rng, hardness=params["hardness"])
            thud = sound.surface_thud(sr, rng)
            y = np.zeros(max(hit.size, thud.size))
            y[: hit.size] += hit
            y[: thud.size] += 0.5 * thud
            return sound.unit_peak(y)
        raise ValueError(f"unknown action {action!r}")

    def offscreen(self, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
        name = sorted(sound.OFFSCREEN_SOURCES)[int(rng.integers(len(sound.OFFSCREEN_SOURCES)))]
        kind, action = sound.OFFSCREEN_SOURCES[name]
        return sound.offscreen_sound(name, sr, rng), kind, action

    def quiet_kind(self, rng: np.random.Generator) -> str:
        return sound.QUIET_AMBIENT

    def ambient(self, kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        return sound.ambient_bed(kind, n, sr, rng)

    def flags(self, kind: str) -> dict[str, int]:
        raised = sound.AMBIENT_FLAGS.get(kind, ())
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
        return sound.unit_peak(x)

    def offscreen(self, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        files = self._files[kind]
        x = _from_onset(self._load(files[int(rng.integers(len(files)))]))
        return sound.unit_peak(_fade_out(x[: int(4.0 * sr)], int(0.05 * sr))), kind, "sound"

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

