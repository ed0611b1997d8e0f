"""Assets for the generation tests, built once per session: a tiny random model directory, a small benchmark,
its pre-encoded store and a retrieval index over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

_CACHE: dict[str, "Assets"] = {}


@dataclass(frozen=True)
class Assets:
    model: Path  # model directory (tiny preset, random weights, a tiny random vocoder)
    bench: Path  # benchmark: 4 episodes of 10-12 s, 32 px, 15 fps, 22.05 kHz
    store: Path
    index: Path


def tiny_model_dir(root: Path, seed: int = 0, sync_encoder: bool = False, p=None) -> Path:
    """Export a tiny-preset model directory (or one of preset `p`) with random weights, the way `train` +
    `export` make one.

    sync_encoder: ship a random sync stream encoder too (the tiny preset's ldm has the stream).
    """
    from action2sound.config import preset
    from action2sound.weights import build_component, export, save_weights

    p = p or preset("tiny")
    run = root / "run"
    # Module initialisers draw from the global generator: fork it so the test session's state is untouched.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for component in ("av", "vae", "ldm", "vocoder") + (("sync_encoder",) if sync_encoder else ()):
            module = build_component(component, p)
            save_weights(run / component / "weights.safetensors", module.state_dict(), component, p)
    return export(run, root / "model", fp16=False)


def assets(root: Path) -> Assets:
    """Build (once per process) the model, benchmark, store and index under root."""
    if "a" in _CACHE:
        return _CACHE["a"]
    from action2sound.benchmark import build_benchmark
    from action2sound.data.readers import read_ego4d_sounds
    from action2sound.data.store import ClipEncoder, preencode
    from action2sound.indexing import build_index_from_store
    from action2sound.weights import load_encoders

    model = tiny_model_dir(root)
    bench = root / "bench"
    build_benchmark(bench, episodes=4, seed=0, size=32, episode_seconds=(10.0, 12.0), progress=False)
    table, _ = read_ego4d_sounds(bench / "all.tsv", bench / "clips")
    av, vae, p, source = load_encoders(model)
    store = root / "store"
    preencode(table, ClipEncoder(av, vae, p, "cpu", source), store, shard_size=8, batch_size=8, progress=False)
    index = build_index_from_store(store, model, root / "index")
    _CACHE["a"] = Assets(model, bench, store, index)
    return _CACHE["a"]
