"""Sound synthesis for the ambient-aware benchmark: impacts, scrapes, shakes, off-screen sources, ambient beds.

Impacts are modal synthesis: a struck body rings as a sum of exponentially damped sinusoids whose
frequency ratios and decay times are set by its material (van den Doel & Pai, "The sounds of physical shapes",
Presence 1998; Cook, "Real Sound Synthesis for Interactive Applications", 2002, ch. 4). Higher modes die
faster (internal friction grows with frequency), the strike position weights the modes, and a contact of
finite duration low-passes the excitation (soft/slow hits are duller). Scrapes drive the same modal filters
with friction noise (stick-slip pulses plus broadband roughness); shakes are granular: many tiny impacts of
the contents against the container, clustered at each reversal of the shaking motion. Ambient beds are
shaped noise and tones (rain, wind, mains hum, crowd babble, traffic, a radio, birds, room tone).

All functions return float64 waves at `sr`; every random choice comes from the `rng` argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

LN1000 = math.log(1000.0)  # T60: amplitude falls by 60 dB = a factor 1000


@dataclass(frozen=True)
class Material:
    """How a kind of object rings when struck: modal frequencies, decays, and contact behaviour."""

    name: str
    f0: tuple[float, float]  # range of the fundamental, Hz (one value drawn per object)
    ratios: tuple[float, ...]  # mode frequencies / fundamental
    t60: tuple[float, float]  # decay time of the fundamental, s
    slope: float  # mode m decays in t60 * ratio_m ** -slope (internal friction grows with frequency)
    contact_ms: float  # duration of a firm contact; longer contact = fewer high modes
    noise: float  # share of broadband contact noise in an impact
    rough: float  # share of surface roughness noise in a scrape (the rest rings the modes)


# Ratios: a free-free bar for wood (1, 2.76, 5.40, 8.93), free circular plates / shells for metal, glass and
# ceramic (dense, inharmonic), a heavily damped box for plastic. Values are typical, jittered per object.
MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        Material("wood", (260.0, 520.0), (1.0, 2.76, 5.40, 8.93, 13.3), (0.07, 0.16), 0.9, 1.2, 0.35, 0.55),
        Material("metal", (380.0, 820.0), (1.0, 1.504, 1.98, 2.44, 2.97, 3.52, 4.17, 4.82, 5.55),
                 (0.9, 1.8), 0.35, 0.35, 0.12, 0.25),
        Material("glass", (1100.0, 2000.0), (1.0, 2.32, 4.25, 6.63, 9.38), (0.45, 0.9), 0.55, 0.25, 0.08,
                 0.3),
        Material("ceramic", (700.0, 1300.0), (1.0, 1.59, 2.59, 3.71, 4.93, 6.2), (0.14, 0.32), 0.7, 0.45,
                 0.2, 0.4),
        Material("plastic", (170.0, 380.0), (1.0, 1.83, 2.91, 4.12, 5.5), (0.035, 0.075), 1.1, 1.8, 0.55,
                 0.65),
    )
}


@dataclass(frozen=True)
class ModalBody:
    """One object's acoustic identity: its modes (fixed for the object, varied per object)."""

    material: str
    freqs: tuple[float, ...]
    t60s: tuple[float, ...]
    weights: tuple[float, ...]
    contact_ms: float
    noise: float
    rough: float


def modal_body(material: Material, rng: np.random.Generator) -> ModalBody:
    """Draw one object of `material`: fundamental, jittered mode ratios, decays and mode weights."""
    f0 = rng.uniform(*material.f0)
    t60 = rng.uniform(*material.t60)
    ratios = np.asarray(material.ratios) * (1.0 + rng.normal(0.0, 0.015, len(material.ratios)))
    ratios[0] = 1.0
    freqs = f0 * ratios
    t60s = t60 * ratios ** -material.slope
    weights = rng.uniform(0.5, 1.0, len(ratios)) / np.sqrt(np.arange(1, len(ratios) + 1))
    return ModalBody(material.name, tuple(freqs.tolist()), tuple(t60s.tolist()), tuple(weights.tolist()),
                     material.contact_ms, material.noise, material.rough)


def unit_peak(x: np.ndarray) -> np.ndarray:
    """x scaled so its largest magnitude is 1 (silence stays silence) -> same shape."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return x / peak if peak > 0 else x


def _onepole_lowpass(x: np.ndarray, cutoff: float, sr: int) -> np.ndarray:
    a = math.exp(-2.0 * math.pi * cutoff / sr)
    return signal.lfilter([1.0 - a], [1.0, -a], x)


def _contact_noise(sr: int, rng: np.random.Generator, tau: float) -> np.ndarray:
    """A short decaying noise burst that starts at full level on sample 0 (the click of contact)."""
    n = max(8, int(6 * tau * sr))
    t = np.arange(n) / sr
    burst = rng.standard_normal(n) * np.exp(-t / tau)
    burst[0] = abs(burst[0]) + 1.0  # make the first sample the loudest: the onset is exactly here
    return burst


def impact(body: ModalBody, sr: int, rng: np.random.Generator, hardness: float = 1.0) -> np.ndarray:
    """A strike on `body` -> unit-peak float64 [samples], onset at sample 0."""
    tc = body.contact_ms / 1000.0 / max(hardness, 1e-3)
    n = int(sr * min(3.0, max(body.t60s) * 1.05 + 0.01))
    t = np.arange(n) / sr
    y = np.zeros(n)
    pos = rng.uniform(0.1, 0.9)  # where it is struck: nodes of a mode there are not excited
    for m, (f, t60, w) in enumerate(zip(body.freqs, body.t60s, body.weights)):
        if f >= 0.45 * sr:
            continue
        exc = w * (0.3 + 0.7 * abs(math.sin(math.pi * (m + 1) * pos)))
        exc /= 1.0 + (f * tc) ** 2  # a contact of duration tc low-passes the force it applies
        k = min(n, int(t60 * sr * 1.2) + 1)
        y[:k] += exc * np.exp(-LN1000 * t[:k] / t60) * np.sin(2 * math.pi * f * t[:k])
    y = unit_peak(y)
    click = unit_peak(np.diff(_contact_noise(sr, rng, tc * 0.6), prepend=0.0))  # high-passed contact
    k = min(n, click.size)
    y[:k] += body.noise * 1.5 * click[:k]
    return unit_peak(y)


def surface_thud(sr: int, rng: np.random.Generator) -> np.ndarray:
    """The table's own low thump when something lands on it -> unit-peak float64 [samples]."""
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    f = rng.uniform(70.0, 140.0)
    body = np.exp(-LN1000 * t / rng.uniform(0.06, 0.12)) * np.sin(2 * math.pi * f * t)
    noise = _onepole_lowpass(_contact_noise(sr, rng, 0.006), 900.0, sr)
    noise = np.pad(noise, (0, max(0, n - noise.size)))[:n]
    y = unit_peak(body) + 0.6 * unit_peak(noise)
    y[0] = abs(y[0]) + 0.3
    return unit_peak(y)


def _resonate(x: np.ndarray, freqs, t60s, weights, sr: int) -> np.ndarray:
    """Drive parallel two-pole resonators (one per mode) with x -> float64 [len(x)]."""
    y = np.zeros_like(x)
    for f, t60, w in zip(freqs, t60s, weights):
        if f >= 0.45 * sr:
            continue
        r = math.exp(-LN1000 / (t60 * sr))
        theta = 2 * math.pi * f / sr
        out = signal.lfilter([1.0 - r], [1.0, -2 * r * math.cos(theta), r * r], x)
        rms = float(np.sqrt(np.mean(out ** 2))) or 1.0
        y += w * out / rms
    return y


def _smooth_random(n: int, sr: int, rng: np.random.Generator, rate_hz: float) -> np.ndarray:
    """A smooth random curve of about unit spread, varying at ~rate_hz -> float64 [n]."""
    step = max(1, int(sr / (rate_hz * 4)))
    knots = rng.standard_normal(n // step + 3)
    # Cubic-ish smoothing of random knots: interpolate, then a short moving average of the knots.
    knots = np.convolve(knots, np.ones(3) / math.sqrt(3), mode="same")
    return np.interp(np.arange(n), np.arange(knots.size) * step, knots)


def scrape(body: ModalBody, sr: int, rng: np.random.Generator, duration: float) -> np.ndarray:
    """Dragging something across `body` for `duration` s -> unit-peak float64 [samples], onset at 0."""
    release = 0.04
    n_on = max(1, int(round(duration * sr)))
    n = n_on + int(release * sr)
    # Stick-slip: the contact catches and releases at a jittered rate set by speed and roughness.
    rate = rng.uniform(70.0, 260.0)
    gaps = rng.gamma(4.0, 1.0 / (4.0 * rate), int(duration * rate * 2) + 8)
    times = np.cumsum(gaps)
    times = times[times < n_on / sr]
    pulses = np.zeros(n)
    pulses[(times * sr).astype(int)] = rng.uniform(0.3, 1.0, times.size)
    pulses[0] = 1.0
    rough = rng.standard_normal(n)
    exc = pulses + 0.25 * rough
    ring = unit_peak(_resonate(exc, body.freqs, [t * 0.35 for t in body.t60s], body.weights, sr))
    surface = unit_peak(np.diff(rough, prepend=0.0))
    y = (1.0 - body.rough) * ring + body.rough * surface
    # Pressure and speed vary while dragging; fast attack so the onset is where contact starts.
    env = np.clip(1.0 + 0.3 * _smooth_random(n, sr, rng, 6.0), 0.3, 1.6)
    attack = int(0.003 * sr)
    env[:attack] *= np.linspace(0.35, 1.0, attack)
    env[n_on:] *= np.linspace(1.0, 0.0, n - n_on)
    return unit_peak(y * env)


def shake(body: ModalBody, sr: int, rng: np.random.Generator, cluster_times: np.ndarray,
          duration: float) -> np.ndarray:
    """Shaking `body` with loose contents; grains cluster at `cluster_times` (s, first 0) -> unit-peak wave."""
    n = int((duration + 0.15) * sr)
    # The contents are many small hard bits: short bright rings of their own plus the container's upper modes.
    kernels = []
    for _ in range(3):
        kn = int(0.03 * sr)
        t = np.arange(kn) / sr
        k = np.zeros(kn)
        for f in rng.uniform(1800.0, min(7000.0, 0.4 * sr), 3):
            k += np.exp(-t / rng.uniform(0.002, 0.006)) * np.sin(2 * math.pi * f * t + rng.uniform(0, 6.3))
        hi = [f for f in body.freqs if f < 0.45 * sr][-3:]
        for f in hi:
            k += 0.5 * np.exp(-t / 0.008) * np.sin(2 * math.pi * f * t)
        k[0] = 0.0
        kernels.append(unit_peak(k))
    impulses = np.zeros((len(kernels), n))
    for j, tc in enumerate(np.asarray(cluster_times, dtype=float)):
        count = int(rng.integers(6, 16))
        delays = np.concatenate([[0.0], rng.exponential(0.018, count - 1)])
        amps = np.concatenate([[1.0], rng.uniform(0.15, 0.8, count - 1)]) * (0.6 if j == 0 else 1.0)
        idx = ((tc + delays) * sr).astype(int)
        keep = idx < n
        which = rng.integers(0, len(kernels), count)
        which[0] = 0
        np.add.at(impulses, (which[keep], idx[keep]), amps[keep])
    y = np.zeros(n)
    for k, imp in zip(kernels, impulses):
        y += signal.oaconvolve(imp, k)[:n]
    # Kernels start at zero (a sine); put a click on the first grain so the sound starts on its sample.
    y[0] += 0.5 * float(np.max(np.abs(y)))
    return unit_peak(y)


def room_response(sr: int, rng: np.random.Generator, t60: float) -> np.ndarray:
    """A diffuse room tail (no direct path) -> float64 [samples], unit energy."""
    n = int(t60 * sr)
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-LN1000 * t / t60)
    ir = _onepole_lowpass(ir, 5000.0, sr)
    ir[: int(0.004 * sr)] = 0.0  # the first reflections arrive a few ms after the direct sound
    return ir / (np.sqrt(np.sum(ir ** 2)) or 1.0)


def add_room(x: np.ndarray, ir: np.ndarray, wet: float) -> np.ndarray:
    """x plus its reverberation (the direct sound is untouched) -> float64 [len(x) + len(ir) - 1]."""
    out = np.zeros(x.size + ir.size - 1)
    out[: x.size] = x
    out += wet * signal.oaconvolve(x, ir)
    return out


# ----------------------------------------------------------------------------------------- off-screen
# Sounds with no visible cause: (source kind, action) as written in the event list.
OFFSCREEN_SOURCES: dict[str, tuple[str, str]] = {
    "knock": ("door", "knock"),
    "footsteps": ("floor", "footsteps"),
    "clatter": ("dishes", "clatter"),
    "beep": ("appliance", "beep"),
    "thud": ("box", "thud"),
}


def offscreen_sound(name: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    """An off-screen source (a key of OFFSCREEN_SOURCES), dry -> unit-peak float64, onset at sample 0."""
    parts: list[tuple[float, np.ndarray, float]] = []  # (start s, wave, gain)
    if name == "knock":
        door = modal_body(Material("door", (110.0, 220.0), (1.0, 2.2, 3.6, 5.1), (0.08, 0.15), 0.8, 2.0, 0.6,
                                   0.5), rng)
        t = 0.0
        for _ in range(int(rng.integers(2, 4))):
            parts.append((t, impact(door, sr, rng, hardness=0.7), rng.uniform(0.7, 1.0)))
            t += rng.uniform(0.14, 0.24)
    elif name == "footsteps":
        t = 0.0
        for _ in range(int(rng.integers(3, 7))):
            n = int(0.18 * sr)
            tt = np.arange(n) / sr
            thump = np.exp(-LN1000 * tt / 0.07) * np.sin(2 * math.pi * rng.uniform(60, 110) * tt)
            heel = np.zeros(n)
            click = np.diff(_contact_noise(sr, rng, 0.002), prepend=0.0)
            heel[: click.size] = click[:n]
            step = unit_peak(thump) + 0.5 * unit_peak(heel)
            step[0] = abs(step[0]) + 0.3
            parts.append((t, unit_peak(step), rng.uniform(0.6, 1.0)))
            t += rng.uniform(0.45, 0.6)
    elif name == "clatter":
        bodies = [modal_body(MATERIALS[m], rng) for m in ("ceramic", "metal", "ceramic")]
        t = 0.0
        for j in range(int(rng.integers(3, 8))):
            parts.append((t, impact(bodies[j % 3], sr, rng, rng.uniform(0.6, 1.2)), 0.9 ** j))
            t += rng.uniform(0.04, 0.15)
    elif name == "beep":
        f = rng.uniform(1800.0, 3200.0)
        t = 0.0
        for _ in range(int(rng.integers(1, 4))):
            n = int(rng.uniform(0.08, 0.2) * sr)
            tt = np.arange(n) / sr
            tone = np.sin(2 * math.pi * f * tt + math.pi / 2)  # cosine: full level from the first sample
            ramp = int(0.004 * sr)
            tone[-ramp:] *= np.linspace(1.0, 0.0, ramp)
            parts.append((t, tone, 1.0))
            t += n / sr + rng.uniform(0.08, 0.15)
    elif name == "thud":
        box = modal_body(MATERIALS["plastic"], rng)
        parts.append((0.0, surface_thud(sr, rng), 1.0))
        parts.append((0.0, impact(box, sr, rng, 0.8), 0.5))
    else:
        raise ValueError(f"unknown off-screen source {name!r}; choose one of {sorted(OFFSCREEN_SOURCES)}")
    total = max(int(round(s * sr)) + w.size for s, w, _ in parts)
    y = np.zeros(total)
    for s, w, g in parts:
        i = int(round(s * sr))
        y[i : i + w.size] += g * w
    return unit_peak(y)


def distant(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Make a dry sound seem to come from another room: duller and more reverberant -> float64."""
    y = _onepole_lowpass(x, rng.uniform(1500.0, 3500.0), sr)
    y[0] = x[0]  # keep the onset on its sample (a one-pole low-pass would soften the first sample only)
    return add_room(y, room_response(sr, rng, rng.uniform(0.5, 0.9)), rng.uniform(0.5, 0.9))


# -------------------------------------------------------------------------------------------- ambient
# Ambient kinds the procedural bank makes, and the Ego4D-Sounds flags each one raises.
AMBIENT_KINDS = ("rain", "wind", "hum", "crowd", "traffic", "music", "birds")
QUIET_AMBIENT = "room"
AMBIENT_FLAGS: dict[str, tuple[str, ...]] = {
    "crowd": ("speech",), "music": ("background_music",), "traffic": ("traffic_noise",), "wind": ("wind_noise",),
}


def _shaped_noise(n: int, sr: int, rng: np.random.Generator, lo: float, hi: float, tilt: float = 0.0,
                  order: int = 2) -> np.ndarray:
    """Gaussian noise band-limited to [lo, hi] Hz with a spectral tilt (amplitude ~ f**tilt) -> unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f[0] = f[1] if f.size > 1 else 1.0
    gain = f ** tilt
    if lo > 0:
        gain = gain / np.sqrt(1.0 + (lo / f) ** (2 * order))
    gain = gain / np.sqrt(1.0 + (f / hi) ** (2 * order))
    gain[0] = 0.0
    y = np.fft.irfft(spec * gain, n)
    return y / (np.sqrt(np.mean(y ** 2)) or 1.0)


def slow_curve(n: int, sr: int, rng: np.random.Generator, periods: tuple[float, float], terms: int = 3) -> np.ndarray:
    """A smooth curve in about [-1, 1] made of a few slow sinusoids (periods in s) -> float64 [n]."""
    step = max(1, sr // 50)  # evaluate at 50 Hz and interpolate: these curves are far slower than that
    tk = np.arange(n // step + 2) * step / sr
    y = np.zeros(tk.size)
    for _ in range(terms):
        y += np.sin(2 * math.pi * tk / rng.uniform(*periods) + rng.uniform(0, 2 * math.pi))
    y /= terms ** 0.5
    return np.interp(np.arange(n) / sr, tk, y)


def _sprinkle(n: int, sr: int, rng: np.random.Generator, rate: float, kernel: np.ndarray,
              amp_sigma: float = 0.6) -> np.ndarray:
    """Poisson events at `rate` per s, each a copy of `kernel` with a log-normal amplitude -> float64 [n]."""
    count = rng.poisson(rate * n / sr)
    imp = np.zeros(n)
    np.add.at(imp, rng.integers(0, n, count), rng.lognormal(0.0, amp_sigma, count))
    return signal.oaconvolve(imp, kernel)[:n]


def _rain(n, sr, rng):
    bed = _shaped_noise(n, sr, rng, 300.0, min(10000.0, 0.45 * sr), tilt=-0.3)
    bed *= 1.0 + 0.15 * slow_curve(n, sr, rng, (5.0, 20.0))
    drops = np.zeros(n)
    kn = int(0.02 * sr)
    t = np.arange(kn) / sr
    for _ in range(12):  # many drop sizes, each a short rising chirp, so no pitch stands out as a tone
        f = rng.uniform(1200.0, min(6000.0, 0.4 * sr))
        k = np.exp(-t / rng.uniform(0.002, 0.006)) * np.sin(2 * math.pi * f * t * (1.0 + 15.0 * t))
        drops += _sprinkle(n, sr, rng, rng.uniform(10.0, 40.0), k)
    drops /= np.sqrt(np.mean(drops ** 2)) or 1.0
    return 0.7 * bed + 0.5 * drops


def _wind(n, sr, rng):
    gust = 0.5 + 0.5 * slow_curve(n, sr, rng, (3.0, 15.0), terms=4)
    gust = np.clip(gust, 0.0, 1.0)
    low = _shaped_noise(n, sr, rng, 15.0, rng.uniform(300.0, 700.0), tilt=-0.8)
    whistle_lo = _shaped_noise(n, sr, rng, 450.0, 800.0, order=4)
    whistle_hi = _shaped_noise(n, sr, rng, 800.0, 1500.0, order=4)
    whistle = gust * whistle_hi + (1.0 - gust) * whistle_lo
    return (0.3 + 0.9 * gust ** 1.5) * low + 0.2 * gust ** 2 * whistle


def _hum(n, sr, rng):
    t = np.arange(n) / sr
    mains = rng.choice([50.0, 60.0])
    drift = 0.03 * slow_curve(n, sr, rng, (5.0, 30.0))
    phase = 2 * math.pi * np.cumsum(mains + drift) / sr
    hum = np.zeros(n)
    for h in range(1, 9):
        if h * mains < 0.45 * sr:
            hum += (1.5 if h % 2 else 1.0) / h * np.sin(h * phase + rng.uniform(0, 6.3))
    fan = _shaped_noise(n, sr, rng, 40.0, rng.uniform(900.0, 2000.0), tilt=-0.4)
    blade = np.sin(2 * math.pi * rng.uniform(80.0, 240.0) * t) * (1.0 + 0.2 * slow_curve(n, sr, rng, (1.0, 4.0)))
    hum /= np.sqrt(np.mean(hum ** 2)) or 1.0
    return 0.6 * hum + 0.6 * fan + 0.15 * blade


# Vowel formants (F1, F2, F3) in Hz: adult averages (Peterson & Barney 1952).
_VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240))


def _crowd(n, sr, rng):
    # Babble: several voices, each a glottal pulse train in talk spurts of syllables; all syllables of one
    # vowel share one formant filter bank, so the cost does not grow with the number of voices.
    src = np.zeros((len(_VOWELS), n))
    hiss = np.zeros(n)
    dur = n / sr
    for _ in range(int(rng.integers(6, 12))):
        base = rng.uniform(95.0, 140.0) if rng.random() < 0.5 else rng.uniform(170.0, 250.0)
        f0 = base * 2.0 ** (0.12 * slow_curve(n, sr, rng, (0.6, 3.0)))
        phase = np.cumsum(f0) / sr
        pulses = np.diff(np.floor(phase), prepend=0.0)
        t = rng.uniform(-2.0, 0.0)
        level = rng.uniform(0.4, 1.0)
        while t < dur:
            spurt_end = t + rng.uniform(0.8, 4.0)
            while t < spurt_end and t < dur:
                length = rng.uniform(0.1, 0.26)
                i0, i1 = int(max(t, 0.0) * sr), int(min(t + length, dur) * sr)
                if i1 - i0 > 8:
                    w = np.hanning(int(length * sr))[int(max(-t, 0.0) * sr):][: i1 - i0]
                    v = int(rng.integers(0, len(_VOWELS)))
                    src[v, i0 : i0 + w.size] += level * pulses[i0 : i0 + w.size] * w
                    if rng.random() < 0.3:  # a fricative at the syllable start
                        k = min(int(0.05 * sr), n - i0)
                        hiss[i0 : i0 + k] += 0.08 * level * rng.standard_normal(k) * np.hanning(k)
                t += length + rng.uniform(0.0, 0.08)
            t += rng.uniform(0.3, 2.5)
    y = np.zeros(n)
    for v, formants in enumerate(_VOWELS):
        if not src[v].any():
            continue
        glottal = signal.lfilter([1.0], [1.0, -0.96], src[v])  # -6 dB/octave source tilt
        for f, w in zip(formants, (1.0, 0.6, 0.3)):
            if f < 0.45 * sr:
                r = math.exp(-math.pi * 90.0 / sr)
                th = 2 * math.pi * f / sr
                y += w * signal.lfilter([1.0 - r], [1.0, -2 * r * math.cos(th), r * r], glottal)
    hiss = np.diff(hiss, prepend=0.0)
    y = y / (np.sqrt(np.mean(y ** 2)) or 1.0) + hiss / (np.sqrt(np.mean(hiss ** 2)) or 1.0) * 0.05
    # The crowd is some distance away: duller, and a room tail blurs the syllables together.
    y = _onepole_lowpass(y, 3500.0, sr)
    return add_room(y, room_response(sr, rng, 0.7), 1.0)[:n]


def _traffic(n, sr, rng):
    dur = n / sr
    rumble = _shaped_noise(n, sr, rng, 15.0, 220.0, tilt=-1.0)
    tyre = _shaped_noise(n, sr, rng, 150.0, 2500.0, tilt=-0.6)
    step = max(1, sr // 100)
    tk = np.arange(n // step + 2) * step / sr
    env = np.zeros(tk.size)
    engine = np.zeros(n)
    t = rng.uniform(-4.0, 0.0)
    while t < dur + 4.0:
        width = rng.uniform(1.2, 3.5)
        amp = rng.uniform(0.4, 1.0)
        env += amp * np.exp(-(((tk - t) / width) ** 2))
        i0, i1 = int(max(t - 2.5 * width, 0.0) * sr), int(min(t + 2.5 * width, dur) * sr)
        if i1 > i0:
            tt = np.arange(i0, i1) / sr
            f = rng.uniform(35.0, 80.0) * (1.0 - 0.05 * np.tanh((tt - t) / (width / 3)))  # Doppler glide
            ph = 2 * math.pi * np.cumsum(f) / sr
            bell = amp * np.exp(-(((tt - t) / width) ** 2))
            engine[i0:i1] += bell * sum(np.sin(h * ph) / h for h in range(1, 5))
        t += rng.exponential(4.0) + 1.0
    env = np.interp(np.arange(n) / sr, tk, env)
    return 0.5 * rumble + tyre * env + 0.25 * engine


def _music(n, sr, rng):
    # A radio in another room: a looping chord progression with bass and hi-hat, low-passed.
    y = np.zeros(n)
    root = int(rng.integers(48, 58))
    prog = [(0, 7, 9, 5), (2, 7, 0, 9), (0, 5, 7, 5)][int(rng.integers(0, 3))]
    beat = 60.0 / rng.uniform(80.0, 120.0)
    cache: dict[tuple[int, float], np.ndarray] = {}

    def note(midi: int, length: float) -> np.ndarray:
        key = (midi, length)
        if key not in cache:
            f = 440.0 * 2.0 ** ((midi - 69) / 12)
            tt = np.arange(int(length * sr)) / sr
            w = sum(np.sin(2 * math.pi * h * f * tt) / h ** 1.5 for h in range(1, 5) if h * f < 0.45 * sr)
            cache[key] = w * np.exp(-tt / (0.35 * length))
        return cache[key]

    def put(i: int, w: np.ndarray, g: float) -> None:
        if i < n:
            k = min(w.size, n - i)
            y[i : i + k] += g * w[:k]

    hat_n = int(0.03 * sr)
    hat = np.diff(rng.standard_normal(hat_n), prepend=0.0) * np.exp(-np.arange(hat_n) / (0.008 * sr))
    t, bar = rng.uniform(-4 * beat, 0.0), 0
    while t < n / sr:
        deg = prog[bar % len(prog)]
        major = deg in (0, 5, 7)
        chord = [root + deg, root + deg + (4 if major else 3), root + deg + 7]
        for b in range(4):
            i = int((t + b * beat) * sr)
            if i + int(beat * sr) <= 0:
                continue
            for m in chord:
                put(max(i, 0), note(m, 2 * beat)[max(-i, 0):], 0.25)
            if b in (0, 2):
                put(max(i, 0), note(root + deg - 12, 2 * beat)[max(-i, 0):], 0.5)
            put(max(i + int(beat * sr / 2), 0), hat, 0.08)
        t += 4 * beat
        bar += 1
    return _onepole_lowpass(_onepole_lowpass(y, 2500.0, sr), 2500.0, sr)


def _birds(n, sr, rng):
    leaves = _shaped_noise(n, sr, rng, 800.0, min(8000.0, 0.45 * sr))
    leaves *= 0.5 + 0.5 * np.clip(0.5 + 0.5 * slow_curve(n, sr, rng, (2.0, 10.0)), 0.0, 1.0)
    y = 0.08 * leaves
    dur = n / sr
    for _ in range(int(rng.integers(2, 4))):  # a few species, each with its own call
        f0 = rng.uniform(2500.0, min(6000.0, 0.4 * sr))
        sweep = rng.uniform(-0.4, 0.4) * f0
        length = rng.uniform(0.04, 0.15)
        tt = np.arange(int(length * sr)) / sr
        f = f0 + sweep * tt / length + 0.05 * f0 * np.sin(2 * math.pi * rng.uniform(20, 60) * tt)
        chirp = np.sin(2 * math.pi * np.cumsum(f) / sr) * np.hanning(tt.size)
        t = rng.uniform(0.0, 4.0)
        while t < dur:
            for j in range(int(rng.integers(2, 8))):
                i = int((t + j * rng.uniform(0.07, 0.15)) * sr)
                if i + chirp.size < n:
                    y[i : i + chirp.size] += rng.uniform(0.4, 1.0) * chirp
            t += rng.uniform(1.5, 8.0)
    return y


def _room(n, sr, rng):
    t = np.arange(n) / sr
    # A quiet room: a low rumble of the building, faint mains hum, and a trace of broadband air noise.
    tone = _shaped_noise(n, sr, rng, 20.0, 500.0, tilt=-0.5)
    air = _shaped_noise(n, sr, rng, 500.0, 0.45 * sr)
    hum = np.sin(2 * math.pi * rng.choice([50.0, 60.0]) * t) * 0.2
    return tone + hum + 0.05 * air


_AMBIENT_SYNTHS = {"rain": _rain, "wind": _wind, "hum": _hum, "crowd": _crowd, "traffic": _traffic,
                   "music": _music, "birds": _birds, QUIET_AMBIENT: _room}


def ambient_bed(kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A stationary ambient bed of `kind` (AMBIENT_KINDS or "room") -> float64 [n], unit RMS."""
    try:
        synth = _AMBIENT_SYNTHS[kind]
    except KeyError:
        raise ValueError(f"unknown ambient kind {kind!r}; choose one of {sorted(_AMBIENT_SYNTHS)}") from None
    y = synth(n, sr, rng)
    y = y - float(np.mean(y))
    return y / (np.sqrt(np.mean(y ** 2)) or 1.0)
