"""Does a store's sync stream carry *when* the sound happens? (evaluation/stream_probe.py)

    .venv/bin/python benchmarks/probe_sync_stream.py runs/default/store

Prints the held-out correlation of a linear probe from the stored stream features to the rise of each clip's
own sound per latent column, beside the same probe fed another clip's features (the control). Run it after
`preencode` and before spending CPU hours on the ldm: a stream that does not beat its control cannot teach the
ldm timing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from action2sound.data.store import Store
from action2sound.errors import Action2SoundError
from action2sound.evaluation.stream_probe import probe_stream


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", type=Path, help="a store folder written by `preencode` with a sync encoder")
    ap.add_argument("--seed", type=int, default=0, help="which quarter of the long videos is held out")
    args = ap.parse_args()
    store = Store(args.store)
    if "sync_features" not in store.fields:
        raise SystemExit(f"{args.store}: this store has no sync_features; pre-encode with a model or run that "
                         "has a sync encoder")
    features, latents = store.column("sync_features"), store.column("latent_mean")
    videos = np.array([c.video_id for c in store.table])
    try:
        res = probe_stream(features, latents, videos, seed=args.seed)
    except ValueError as err:
        raise SystemExit(f"{args.store}: {err}") from None
    print(f"{args.store}: {res.train_clips} training clips, {res.test_clips} held-out clips")
    print(f"held-out r, own features {res.own_r:.3f} | another clip's features (control) {res.other_r:.3f}")


if __name__ == "__main__":
    try:
        main()
    except Action2SoundError as err:
        raise SystemExit(f"error: {err}") from None
