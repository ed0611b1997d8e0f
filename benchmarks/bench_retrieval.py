"""Retrieval cost: build time, query latency (batch 1 and 64) and recall@1 of the approximate indexes.

The clips are simulated: random 256-d embeddings grouped by long video (each video a random direction, its
clips scattered around it, like the clips of one recording), or plain i.i.d. Gaussian with
`--layout iid` (the hardest case for IVF and HNSW). Queries are held-out perturbed copies of clips, and are
also run excluding their own long video, as evaluation does.

    .venv/bin/python benchmarks/bench_retrieval.py --sizes 10000 1000000 --nlist-1m 1024

Latency goes through AudioIndex.query (the public API, Python overhead included). Builds use `--threads`
OpenMP threads (default: all), queries `--query-threads` (default 1: on a busy machine OpenMP threads that
spin-wait for a busy core make a batch-1 query several times slower, not faster).
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import faiss
import numpy as np

from action2sound.retrieval import AudioIndex, IndexMeta, default_nlist


def simulate(n: int, dim: int, per_video: int, layout: str, spread: float, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings [n, dim] float32 and the long-video number [n] of each clip."""
    video_of = np.arange(n) // per_video
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    if layout == "clustered":
        centres = rng.standard_normal((int(video_of[-1]) + 1, dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        # In place, chunked: a 1 M x 256 float32 matrix is 1 GB, so no full-size temporaries.
        for a in range(0, n, 65536):
            b = min(n, a + 65536)
            emb[a:b] *= spread / np.sqrt(dim)
            emb[a:b] += centres[video_of[a:b]]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb, video_of


def clip_table(video_of: np.ndarray) -> IndexMeta:
    """Metadata for the simulated clips (ids, videos, media paths, ambient levels)."""
    n = len(video_of)
    vids = np.array([f"v{v:07d}" for v in range(int(video_of[-1]) + 1)], dtype=object)[video_of]
    return IndexMeta(clip_id=np.array([f"c{i:08d}" for i in range(n)], dtype=object), video_id=vids,
                     media_path=vids, media_start=np.zeros(n), media_end=np.full(n, 3.0),
                     ambient_db=np.linspace(-80, -10, n))


def latency_ms(index: AudioIndex, q: np.ndarray, batch: int, budget_s: float, exclude=None) -> float:
    """Mean wall time per query (ms) over batches of `batch` queries, stopping after ~budget_s."""
    index.query(q[:batch], k=1, exclude_video_ids=None if exclude is None else exclude[:batch])  # warm-up
    done, t0 = 0, time.perf_counter()
    while done + batch <= len(q):
        ex = None if exclude is None else exclude[done:done + batch]
        index.query(q[done:done + batch], k=1, exclude_video_ids=ex)
        done += batch
        if time.perf_counter() - t0 > budget_s:
            break
    return 1e3 * (time.perf_counter() - t0) / max(done, 1)


def top1(index: AudioIndex, q: np.ndarray, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """Row [Q] and cosine [Q] of each query's best hit."""
    hits = [h[0] for h in index.query(q, k=1, exclude_video_ids=exclude)]
    return np.array([h.index for h in hits]), np.array([h.score for h in hits])


def run_size(n: int, args: argparse.Namespace, rng: np.random.Generator) -> list[dict]:
    print(f"\n== {n:,} clips, {args.dim}-d, layout {args.layout}, {args.per_video} clips per video ==", flush=True)
    t0 = time.perf_counter()
    emb, video_of = simulate(n, args.dim, args.per_video, args.layout, args.spread, rng)
    table = clip_table(video_of)
    print(f"simulated + metadata table: {time.perf_counter() - t0:.1f} s", flush=True)
    picks = rng.choice(n, size=args.queries, replace=False)
    q = emb[picks] + (args.spread / 2 / np.sqrt(args.dim)) * rng.standard_normal((len(picks), args.dim),
                                                                                   dtype=np.float32)
    own = [str(v) for v in table.video_id[picks]]
    rows, truth = [], {}
    nlist = args.nlist_1m if (n >= 1_000_000 and args.nlist_1m) else default_nlist(n)
    for kind in args.kinds:
        faiss.omp_set_num_threads(args.threads)
        t0 = time.perf_counter()
        index = AudioIndex.build(emb, None, table, kind=kind, nlist=nlist, nprobe=args.nprobe[0],
                                 hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                                 ef_search=args.ef_search[0], seed=args.seed)
        build_s = time.perf_counter() - t0
        faiss.omp_set_num_threads(args.query_threads)
        sweep = {"exact": [None], "ivf": args.nprobe, "hnsw": args.ef_search}[kind]
        for setting in sweep:
            view = index if setting is None else (
                index.with_search(nprobe=setting) if kind == "ivf" else index.with_search(ef_search=setting))
            row = {"clips": n, "kind": kind, "build_s": round(build_s, 2),
                   "setting": {"exact": "-", "ivf": f"nlist {nlist} nprobe {setting}",
                               "hnsw": f"M {args.hnsw_m} efSearch {setting}"}[kind],
                   "ms_b1": latency_ms(view, q, 1, args.budget_s),
                   "ms_b64": latency_ms(view, q, 64, args.budget_s),
                   "ms_b1_excl": latency_ms(view, q, 1, args.budget_s, own)}
            sample = q[:args.recall_sample]
            got = {"plain": top1(view, sample), "excl": top1(view, sample, own[:args.recall_sample])}
            if kind == "exact":
                truth = got
            if truth:
                for mode, suffix in (("plain", ""), ("excl", "_excl")):
                    row["recall1" + suffix] = float(np.mean(got[mode][0] == truth[mode][0]))
                    # A miss that finds an almost-as-close clip costs little: the cosine it gives up.
                    row["cos_lost" + suffix] = float(np.mean(truth[mode][1] - got[mode][1]))
            rows.append(row)
            print(_fmt(row), flush=True)
        del index, view
        gc.collect()
    return rows


def _fmt(r: dict) -> str:
    rec = (f"{r['recall1']:.3f} / {r['recall1_excl']:.3f}, cos lost {r['cos_lost']:.4f} / {r['cos_lost_excl']:.4f}"
           if "recall1" in r else "(no exact reference)")
    return (f"{r['kind']:5s} {r['setting']:26s} build {r['build_s']:8.2f} s | ms/query b1 {r['ms_b1']:8.3f} "
            f"b64 {r['ms_b64']:8.3f} b1+excl {r['ms_b1_excl']:8.3f} | recall@1 plain/excl {rec}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    p.add_argument("--kinds", nargs="+", default=["exact", "ivf", "hnsw"], choices=["exact", "ivf", "hnsw"])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layout", default="clustered", choices=["clustered", "iid"])
    p.add_argument("--per-video", type=int, default=200, help="clips per simulated long video")
    p.add_argument("--spread", type=float, default=1.0, help="clip scatter around its video's direction")
    p.add_argument("--queries", type=int, default=640)
    p.add_argument("--recall-sample", type=int, default=200)
    p.add_argument("--budget-s", type=float, default=3.0, help="time spent timing each latency figure")
    p.add_argument("--nlist-1m", type=int, default=0, help="IVF cells at >= 1 M clips (0: library default)")
    p.add_argument("--nprobe", type=int, nargs="+", default=[32])
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=80)
    p.add_argument("--ef-search", type=int, nargs="+", default=[64])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=faiss.omp_get_max_threads(), help="OpenMP threads for builds")
    p.add_argument("--query-threads", type=int, default=1, help="OpenMP threads for queries")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    print(f"faiss {faiss.__version__}, OpenMP threads: build {args.threads}, query {args.query_threads}")
    rng = np.random.default_rng(args.seed)
    rows = [r for n in args.sizes for r in run_size(n, args, rng)]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
