"""Memory of loading a model directory: the peak resident set against the size of the weights.

`make` writes a model directory of a preset with random weights (each stage built, saved to a run folder and
freed in turn, then `weights.export`), the way `train` + `export` make one; `load` loads it with
`weights.load_model_dir` (hashes checked, as the pipeline does), reads every weight once (so that weights
still in the file's pages count) and prints the weights' size, the loaded weights' size and the peak RSS.
Run `load` under `/usr/bin/time -v` for the outside view; point PYTHONPATH at another checkout to measure its
loading code on the same directory.

    .venv/bin/python benchmarks/bench_load.py make /tmp/paper_model --preset paper    # 4.6 GB (fp32)
    /usr/bin/time -v .venv/bin/python benchmarks/bench_load.py load /tmp/paper_model
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from action2sound.config import preset as get_preset
from action2sound.weights import build_component, export, load_model_dir, save_weights


def peak_rss_bytes() -> int:
    """This process's peak resident set so far (ru_maxrss: kilobytes on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def make(out: Path, name: str, fp16: bool) -> None:
    p = get_preset(name)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        for k, component in enumerate(("av", "vae", "ldm")):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(k)
                module = build_component(component, p)
            save_weights(run / component / "weights.safetensors", module.state_dict(), component, p)
            del module
        export(run, out, fp16=fp16)
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"{out}: {name} preset, random weights, {size / 1e9:.2f} GB of safetensors; "
          f"peak RSS while making it {peak_rss_bytes() / 1e9:.2f} GB")


def load(folder: Path) -> None:
    before = peak_rss_bytes()
    t0 = time.perf_counter()
    md = load_model_dir(folder)
    seconds = time.perf_counter() - t0
    modules = [m for m in (md.av, md.vae, md.ldm, md.vocoder) if m is not None]
    # Read every weight once, as the first inference does: weights that still lie in the file's pages (read
    # lazily) count in the resident set from here on, so the peak below is the loaded model's real footprint.
    with torch.no_grad():
        checksum = sum(float(t.float().sum()) if t.numel() < 1 << 20 else float(t.sum(dtype=torch.float64))
                       for m in modules for t in m.state_dict().values() if t.is_floating_point())
    params = sum(t.numel() * t.element_size() for m in modules for t in m.state_dict().values())
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    peak = peak_rss_bytes()
    print(f"{folder}: {size / 1e9:.3f} GB of weights files, {params / 1e9:.3f} GB of loaded weights "
          f"({md.preset.name} preset); loaded in {seconds:.1f} s; checksum {checksum:.6g}")
    print(f"peak RSS {peak / 1e9:.3f} GB ({peak / params:.2f}x the loaded weights); "
          f"{before / 1e9:.3f} GB before loading (python + torch + imports)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write a model directory with random weights")
    m.add_argument("out", type=Path)
    m.add_argument("--preset", default="paper")
    m.add_argument("--fp16", action="store_true", help="export in fp16 (default fp32, as `convert` writes)")
    ld = sub.add_parser("load", help="load a model directory, print its size and the peak RSS")
    ld.add_argument("folder", type=Path)
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.out, args.preset, args.fp16)
    else:
        load(args.folder)


if __name__ == "__main__":
    main()
