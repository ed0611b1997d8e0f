"""A bank of real recordings for the benchmark, gathered from Debian packages.

`build_soundbank(OUT)` downloads each package with `apt-get download` (no install, no root needed beyond
what apt-get itself asks), unpacks it with `dpkg-deb -x`, sorts its sound files into

  OUT/events/<kind>/<package>__<name>.<ext>     short sounds, one folder per kind (the benchmark's object kinds)
  OUT/ambient/<package>__<name>.<ext>           long recordings for the ambient bed
  OUT/LICENSES.md                               every file with its package, version and licence
  OUT/licenses/<package>.copyright              each package's own copyright file, verbatim

and deletes the download. The sorting rules are per package: ordered regular expressions over the file's
path inside the package (members of a .zip archive inside the package count as files under it). A file's
licence is read from the package's machine-readable copyright file (DEP-5): a paragraph naming the file
wins; otherwise the package's known licence for its media; otherwise the catch-all paragraph.

0ad-data is a 1.3 GB download: it is fetched only when asked (include_large=True), and last.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import Action2SoundError

AUDIO_EXTENSIONS = (".wav", ".ogg", ".flac", ".mp3", ".oga", ".opus")
_ARCHIVES = (".zip", ".pyromod")
MAX_EVENT_SECONDS = 10.0  # longer "events" are loops or music
MIN_AMBIENT_SECONDS = 3.0


@dataclass(frozen=True)
class PackageSource:
    """A Debian package of sounds and how to sort them."""

    name: str
    media_licence: str | None  # the licence of its sound files where the copyright file names none per file
    rules: tuple[tuple[str, str], ...]  # (regex over the lower-cased path, "skip" | "ambient" | "events/<kind>")
    large: bool = False


SONIC_PI_RULES = (
    (r"/samples/(drum_cymbal|drum_cowbell|drum_splash|perc_bell|elec_bell|elec_triangle|elec_chime)", "events/metal"),
    (r"/samples/(drum_|tabla_)", "events/drum"),
    (r"/samples/perc_door", "events/door"),
    (r"/samples/(perc_impact|perc_till)", "events/impact"),
    (r"/samples/perc_snap", "events/snap"),
    (r"/samples/(perc_swash|perc_swoosh|ambi_swoosh)", "events/swoosh"),
    (r"/samples/elec_wood", "events/wood"),
    (r"/samples/misc_crow", "events/animal"),
    (r"/samples/(vinyl_hiss|ambi_sauna|ambi_glass_hum|ambi_haunted_hum|ambi_drone|ambi_lunar_land)", "ambient"),
)
TUXPAINT_RULES = (
    (r"_desc|/alphabets/|final-roll-call", "skip"),  # spoken descriptions and letters: speech, not sounds
    (r"glass|bottle", "events/glass"),
    (r"mallet_metal|hammer|cymbal|scissors", "events/metal"),
    (r"drum", "events/drum"),
    (r"/saw\.", "events/wood"),
    (r"/animals/|blackcat|bat_left|spider", "events/animal"),
    (r"kettle|washing-machine|vacuum|toilet", "events/appliance"),
    (r"fireworks|lightning", "events/bang"),
    (r"/stamps/([^/]+)/", r"events/\1"),  # anything else: its stamp category
)
# 0 A.D.'s sound tree (audio/ambient, audio/actor, audio/attack, audio/resource, ...): game voices, music
# and interface blips are skipped; the rest is sorted by material words in the path.
ZERO_AD_RULES = (
    (r"/audio/(music|voice|interface|gui)/", "skip"),
    (r"/audio/ambient/", "ambient"),
    (r"singlesteps|footstep", "events/footsteps"),
    (r"lumber|chop", "events/wood"),
    (r"wood", "events/wood"),
    (r"metal|shield|sword|anvil|smith", "events/metal"),
    (r"stone|mining|rock|quarry", "events/stone"),
    (r"dirt|hoe_|gravel|sand|mud", "events/dirt"),
    (r"leaves|bush|foliage", "events/leaves"),
    (r"con_saw|/saw", "events/saw"),
    (r"/fauna/|animal", "events/animal"),
)
PACKAGES: tuple[PackageSource, ...] = (
    PackageSource("sonic-pi-samples", None, SONIC_PI_RULES),
    PackageSource("tuxpaint-stamps-default", "GPL-2", TUXPAINT_RULES),
    PackageSource("0ad-data", "CC-BY-SA-3.0", ZERO_AD_RULES, large=True),
)


@dataclass(frozen=True)
class SoundbankSummary:
    """What build_soundbank wrote."""

    root: Path
    packages: tuple[str, ...]
    kinds: dict[str, int] = field(default_factory=dict)  # events per kind
    ambient: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    def __str__(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items()))
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        return (f"sound bank at {self.root} from {', '.join(self.packages)}: {sum(self.kinds.values())} events "
                f"({kinds}), {self.ambient} ambient recordings; skipped: {skipped}")


def _need_tools() -> None:
    missing = [t for t in ("apt-get", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        raise Action2SoundError(
            f"building a sound bank needs {' and '.join(missing)} (a Debian or Ubuntu system); elsewhere, make "
            "the bank by hand: DIR/events/<kind>/*.wav|ogg|flac and DIR/ambient/*, then use --bank DIR")


def fetch_package(name: str, workdir: Path) -> tuple[Path, str]:
    """`apt-get download` + `dpkg-deb -x` into workdir -> (the unpacked root, the package version)."""
    _need_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["apt-get", "download", name], cwd=workdir, capture_output=True, text=True)
    debs = sorted(workdir.glob(f"{name}_*.deb"))
    if got.returncode != 0 or not debs:
        tail = (got.stderr or got.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Action2SoundError(f"`apt-get download {name}` failed ({tail[0]}); run `apt-get update` first, "
                                "or check that the package exists for this distribution")
    deb = debs[-1]
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True).stdout.strip()
    root = workdir / name
    unpack = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True)
    deb.unlink()  # the largest is 1.3 GB: free the space as soon as it is unpacked
    if unpack.returncode != 0:
        raise Action2SoundError(f"`dpkg-deb -x` could not unpack {deb.name} ({unpack.stderr.strip()[:200]})")
    return root, version or "unknown"


def parse_dep5(text: str) -> list[tuple[tuple[str, ...], str]]:
    """The (file patterns, licence name) paragraphs of a machine-readable Debian copyright file, in order."""
    out = []
    for para in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t"):
                if key:
                    fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "files" in fields and "license" in fields:
            out.append((tuple(fields["files"].split()), fields["license"].splitlines()[0].strip()))
    return out


def licence_for(rel: str, paragraphs: list[tuple[tuple[str, ...], str]], media_default: str | None) -> str:
    """A file's licence: a paragraph that names it > the package's media licence > the catch-all paragraph."""
    base = rel.rsplit("/", 1)[-1]
    specific = catch_all = None
    for patterns, lic in paragraphs:
        for pat in patterns:
            if pat == "*":
                catch_all = lic
                continue
            # Copyright files name upstream paths (etc/samples/x.flac); installed paths differ in their
            # directories (usr/share/.../samples/x.flac), so an exact file name also counts as a match.
            pbase = pat.rsplit("/", 1)[-1]
            if (fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel, "*/" + pat)
                    or (not any(c in pbase for c in "*?[") and pbase == base)):
                specific = lic  # later paragraphs override earlier ones (DEP-5)
    return specific or media_default or catch_all or "see the package's copyright file"


def classify(rel: str, rules: tuple[tuple[str, str], ...]) -> str | None:
    """The destination ("ambient" or "events/<kind>") of a path inside a package, or None to skip it."""
    low = "/" + rel.lower()
    for pattern, dest in rules:
        m = re.search(pattern, low)
        if m:
            if dest == "skip":
                return None
            return m.expand(dest).replace(" ", "_")
    return None


def _package_audio(root: Path):
    """Yield (path inside the package, a function that copies it to a given file) for every sound file."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        ext = path.suffix.lower()
        if ext in AUDIO_EXTENSIONS:
            yield rel, (lambda dst, src=path: shutil.copyfile(src, dst))
        elif ext in _ARCHIVES:
            try:
                zf = zipfile.ZipFile(path)
            except zipfile.BadZipFile:
                continue
            with zf:
                for member in sorted(zf.namelist()):
                    if Path(member).suffix.lower() in AUDIO_EXTENSIONS:
                        def copy(dst, z=path, m=member):
                            with zipfile.ZipFile(z) as zz, zz.open(m) as src, open(dst, "wb") as out:
                                shutil.copyfileobj(src, out)
                        yield f"{rel}/{member}", copy


def _duration(path: Path) -> float | None:
    """Seconds of sound in the file; None when libsndfile cannot decode it, 0 when it decodes to silence."""
    import soundfile

    try:
        seconds = float(soundfile.info(str(path)).duration)
        # Some packages ship silent placeholders (tuxpaint's nandou.ogg): a bank must not hold them.
        return seconds if np.any(soundfile.read(str(path), dtype="float32")[0]) else 0.0
    except Exception:  # noqa: BLE001 - not decodable by libsndfile: the caller skips it
        return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def build_soundbank(out_dir: str | Path, include_large: bool = False, packages: tuple[str, ...] | None = None,
                    progress: bool = True) -> SoundbankSummary:
    """Fetch the sound packages, sort their files into out_dir/events/<kind>/ and ambient/ -> summary."""
    sources = [p for p in PACKAGES if include_large or not p.large]
    if packages is not None:
        known = {p.name: p for p in PACKAGES}
        unknown = [n for n in packages if n not in known]
        if unknown:
            raise Action2SoundError(f"unknown sound package(s) {unknown}; choose from {sorted(known)}")
        sources = [known[n] for n in packages]
    sources.sort(key=lambda p: p.large)  # the huge one last
    out = Path(out_dir)
    (out / "licenses").mkdir(parents=True, exist_ok=True)
    kinds: dict[str, int] = {}
    skipped: dict[str, int] = {}
    ambient = 0
    rows: list[tuple[str, str, str, str]] = []
    versions: list[tuple[str, str, str]] = []
    for src in sources:
        if progress:
            print(f"fetching {src.name}{' (1.3 GB)' if src.large else ''} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix=".work-", dir=out) as tmp:
            root, version = fetch_package(src.name, Path(tmp))
            copyright_file = root / "usr" / "share" / "doc" / src.name / "copyright"
            text = copyright_file.read_text(errors="replace") if copyright_file.is_file() else ""
            if text:
                (out / "licenses" / f"{src.name}.copyright").write_text(text)
            paragraphs = parse_dep5(text)
            versions.append((src.name, version, src.media_licence or "per file (copyright file)"))
            for rel, copy in _package_audio(root):
                dest = classify(rel, src.rules)
                if dest is None:
                    skipped["not a wanted sound"] = skipped.get("not a wanted sound", 0) + 1
                    continue
                folder = out / dest
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"{src.name}__{_safe(Path(rel).name)}"
                k = 2
                while target.exists():
                    target = folder / f"{src.name}__{_safe(Path(rel).stem)}_{k}{Path(rel).suffix}"
                    k += 1
                copy(target)
                seconds = _duration(target)
                why = None
                if seconds is None:
                    why = "undecodable"
                elif seconds <= 0:
                    why = "silent"
                elif dest == "ambient" and seconds < MIN_AMBIENT_SECONDS:
                    why = f"ambient shorter than {MIN_AMBIENT_SECONDS:g} s"
                elif dest != "ambient" and seconds > MAX_EVENT_SECONDS:
                    why = f"event longer than {MAX_EVENT_SECONDS:g} s"
                if why:
                    target.unlink()
                    skipped[why] = skipped.get(why, 0) + 1
                    continue
                if dest == "ambient":
                    ambient += 1
                else:
                    kind = dest.split("/", 1)[1]
                    kinds[kind] = kinds.get(kind, 0) + 1
                rows.append((target.relative_to(out).as_posix(), src.name, licence_for(rel, paragraphs,
                                                                                     src.media_licence), rel))
    for d in list((out / "events").glob("*")) if (out / "events").is_dir() else []:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    _write_licences(out, versions, rows)
    return SoundbankSummary(out, tuple(s.name for s in sources), kinds, ambient, skipped)


def _write_licences(out: Path, versions, rows) -> None:
    lines = [
        "# Sound bank licences",
        "",
        "Built by `action2sound data soundbank` from Debian packages. Each file keeps the licence its package's",
        "copyright file gives it (copied verbatim to `licenses/<package>.copyright`); honour those licences",
        "(attribution, share-alike) when you share the bank or data built from it.",
        "",
        "## Packages",
        "",
        "| package | version | licence of its sounds |",
        "| --- | --- | --- |",
        *(f"| {n} | {v} | {lic} |" for n, v, lic in versions),
        "",
        "## Files",
        "",
        "| file | package | licence | path in the package |",
        "| --- | --- | --- | --- |",
        *(f"| {f} | {p} | {lic} | {rel} |" for f, p, lic, rel in sorted(rows)),
        "",
    ]
    (out / "LICENSES.md").write_text("\n".join(lines))
