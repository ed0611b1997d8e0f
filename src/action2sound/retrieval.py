"""The audio index: the training clips' embeddings in faiss, their metadata, and top-k queries.

The paper picks the audio condition by cross-modal retrieval: the query video's embedding is compared
(cosine) with every training clip's *audio* embedding of the audio-visual contrastive model, and the top-1
clip's audio becomes the condition (SPEC §1, §2 "retrieval"). We keep the clips' video embeddings too, for
video-to-video search and for the `quiet` ambient mode.

Embeddings are L2-normalised on the way in, so inner product is cosine. `exact` (IndexFlatIP) is the
default; `ivf` (IndexIVFFlat over a trained k-means quantiser) and `hnsw` (IndexHNSWFlat) trade a little
recall for speed at millions of clips.

Excluding the query's own long video (fair evaluation: a test clip's neighbours share its ambient and
often its action) is done by searching deeper, never by dropping results: asking for k + (clips of the
excluded video) neighbours guarantees k others for an exhaustive search; approximate searches widen their
beam (nprobe / efSearch) until k others are found, and fall back to an exact scan if even that fails.

On disk an index is a folder: ``audio.faiss``, ``video.faiss`` (when built with video embeddings),
``clips.npz`` (the columnar metadata, no pickles) and ``index.json`` (kind, dim, count, model hash, search
parameters). ``index.json`` is written last, so a folder whose writing was interrupted does not load.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from action2sound.errors import Action2SoundError

IndexKind = Literal["exact", "ivf", "hnsw"]
Space = Literal["audio", "video"]
INDEX_KINDS = ("exact", "ivf", "hnsw")
FORMAT_VERSION = 1

_JSON_NAME = "index.json"
_CLIPS_NAME = "clips.npz"
_SPACE_FILES = {"audio": "audio.faiss", "video": "video.faiss"}
_STRING_COLUMNS = ("clip_id", "video_id", "media_path")
_FLOAT_COLUMNS = ("media_start", "media_end", "ambient_db")
# Floor of the ambient level: digital silence reads as -120 dB rather than -inf, so levels stay sortable.


@dataclass(frozen=True)
class IndexEntry:
    """One indexed clip: where its media is and how loud its ambient is."""

    clip_id: str
    video_id: str  # the long video it was cut from; clips of one video share their ambient
    media_path: str  # relative to the store / dataset root the caller knows about
    media_start: float  # seconds into media_path
    media_end: float
    ambient_db: float  # ambient_level_db of the clip's audio


@dataclass(frozen=True)
class Hit:
    """One query result: the clip's row in the index, its ids and the cosine score."""

    index: int
    clip_id: str
    video_id: str
    score: float


@dataclass(frozen=True, eq=False)
class IndexMeta:
    """The index's metadata, one column per IndexEntry field (N rows), cheap at millions of clips."""

    clip_id: np.ndarray  # [N] object (str)
    video_id: np.ndarray  # [N] object (str)
    media_path: np.ndarray  # [N] object (str)
    media_start: np.ndarray  # [N] float64 seconds
    media_end: np.ndarray  # [N] float64 seconds
    ambient_db: np.ndarray  # [N] float64 dB
    # Derived: video_id as integer codes into video_names, so exclusion is a vectorised compare.
    video_names: np.ndarray = field(init=False, repr=False)
    video_codes: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.clip_id)
        for name in _STRING_COLUMNS:
            col = np.asarray(getattr(self, name), dtype=object).reshape(-1)
            if len(col) != n:
                raise Action2SoundError(f"clip metadata column {name} has {len(col)} rows, clip_id has {n}; "
                                        "give every column one value per clip")
            if not all(isinstance(v, str) for v in col):
                raise Action2SoundError(f"clip metadata column {name} must hold strings only")
            object.__setattr__(self, name, col)
        for name in _FLOAT_COLUMNS:
            col = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if len(col) != n:
                raise Action2SoundError(f"clip metadata column {name} has {len(col)} rows, clip_id has {n}; "
                                        "give every column one value per clip")
            if not np.all(np.isfinite(col)):
                raise Action2SoundError(f"clip metadata column {name} holds NaN or inf; "
                                        "use finite values (a silent clip's ambient level is -120 dB)")
            object.__setattr__(self, name, col)
        if n and len(np.unique(self.clip_id)) != n:
            raise Action2SoundError("clip ids in the index metadata are not unique; give each clip its own id")
        names, codes = np.unique(self.video_id, return_inverse=True) if n else (
            np.empty(0, dtype=object), np.empty(0, dtype=np.int64))
        object.__setattr__(self, "video_names", names)
        object.__setattr__(self, "video_codes", codes.astype(np.int64).reshape(-1))

    @classmethod
    def from_entries(cls, entries: Sequence[IndexEntry]) -> IndexMeta:
        """Columns from a list of IndexEntry."""
        return cls(**{name: [getattr(e, name) for e in entries] for name in _STRING_COLUMNS + _FLOAT_COLUMNS})

    def __len__(self) -> int:
        return len(self.clip_id)

    def entry(self, i: int) -> IndexEntry:
        """Row i as an IndexEntry."""
        return IndexEntry(
            clip_id=str(self.clip_id[i]), video_id=str(self.video_id[i]), media_path=str(self.media_path[i]),
            media_start=float(self.media_start[i]), media_end=float(self.media_end[i]),
            ambient_db=float(self.ambient_db[i]),
        )

    def video_code(self, video_id: str | None) -> int:
        """Integer code of a long-video id; -1 for None or a video the index does not hold."""
        if video_id is None:
            return -1
        j = int(np.searchsorted(self.video_names, video_id))
        return j if j < len(self.video_names) and self.video_names[j] == video_id else -1

    def save(self, path: Path) -> None:
        """Write the columns to an .npz (strings as UTF-8 bytes + offsets, so loading needs no pickle)."""
        arrays: dict[str, np.ndarray] = {}
        for name in _STRING_COLUMNS:
            data, offsets = _pack_strings(getattr(self, name))
            arrays[f"{name}.utf8"], arrays[f"{name}.offsets"] = data, offsets
        for name in _FLOAT_COLUMNS:
            arrays[name] = getattr(self, name)
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> IndexMeta:
        """Read what save() wrote."""
        with np.load(path, allow_pickle=False) as z:
            cols = {name: _unpack_strings(z[f"{name}.utf8"], z[f"{name}.offsets"]) for name in _STRING_COLUMNS}
            cols.update({name: z[name] for name in _FLOAT_COLUMNS})
        return cls(**cols)


def _pack_strings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _unpack_strings(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    buf = data.tobytes()
    out = np.empty(len(offsets) - 1, dtype=object)
    out[:] = [buf[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    return out


def _normalised(emb: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    """[N, D] float32 rows scaled to unit length; a clear error for a wrong shape, NaN or a zero row."""
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise Action2SoundError(f"{what} must be a [N, D] array, got shape {tuple(np.shape(emb))}")
    if dim is not None and x.shape[1] != dim:
        raise Action2SoundError(f"{what} has dimension {x.shape[1]} but the index holds {dim}-d embeddings; "
                                "encode with the model the index was built with")
    if not np.all(np.isfinite(x)):
        raise Action2SoundError(f"{what} holds NaN or inf values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise Action2SoundError(f"{what} has an all-zero row, which has no direction to compare")
    return np.ascontiguousarray(x / norms)


@dataclass(frozen=True)
class SearchSettings:
    """How an approximate index searches and was built (ignored by `exact`)."""

    nlist: int = 0  # IVF cells; 0 for non-IVF kinds
    nprobe: int = 32  # IVF cells visited per query
    hnsw_m: int = 32  # HNSW neighbours per node
    ef_construction: int = 80
    ef_search: int = 64  # HNSW beam width per query


def default_nlist(n: int) -> int:
    """IVF cell count for n clips: ~4 sqrt(n) (faiss's guideline), at most n / 39 so k-means has data."""
    return int(max(1, min(round(4 * math.sqrt(n)), n // 39)))


class _Subset:
    """A faiss index over some rows of the clip table, with per-video counts for exclusion."""

    def __init__(self, index: faiss.Index, rows: np.ndarray | None, video_codes: np.ndarray, n_videos: int):
        self.index = index
        self.rows = rows  # subset position -> clip row; None: identity
        self.codes = video_codes if rows is None else video_codes[rows]
        self.counts = np.bincount(self.codes, minlength=n_videos)  # [V] clips of each video
        # [V] IVF cells holding each video's clips: probes that an excluded video may waste, so they are
        # added to nprobe for its queries (clips of one long video look alike and crowd a few cells).
        self.cells = None
        ivf = faiss.downcast_index(index)
        if isinstance(ivf, faiss.IndexIVF):
            _reconstruct(ivf, np.zeros(0, dtype=np.int64))  # ensures the direct map exists
            lists = faiss.vector_to_array(ivf.direct_map.array) >> 32  # [N] cell of each row
            pairs = np.unique(self.codes * np.int64(ivf.nlist) + lists)
            self.cells = np.bincount(pairs // ivf.nlist, minlength=n_videos)


class AudioIndex:
    """Clip embeddings (audio, optionally video) in faiss plus the clip metadata; top-k cosine queries."""

    def __init__(self, audio: faiss.Index, video: faiss.Index | None, meta: IndexMeta, kind: str,
                 settings: SearchSettings, model_hash: str = ""):
        self._spaces = {"audio": audio, "video": video}
        self.meta = meta
        self.kind = kind
        self.settings = settings
        self.model_hash = model_hash
        self.dim = int(audio.d)
        self._full = {s: _Subset(ix, None, meta.video_codes, len(meta.video_names))
                      for s, ix in self._spaces.items() if ix is not None}
        self._quiet_cache: dict[tuple[str, float], _Subset] = {}

    # ---------------------------------------------------------------- building, saving, loading
    @classmethod
    def build(cls, audio_emb: np.ndarray, video_emb: np.ndarray | None, meta: IndexMeta | Sequence[IndexEntry],
              kind: IndexKind = "exact", nlist: int | None = None, nprobe: int = 32, hnsw_m: int = 32,
              ef_construction: int = 80, ef_search: int = 64, model_hash: str = "",
              train_size: int | None = None, seed: int = 0) -> AudioIndex:
        """Index audio_emb [N, D] (and video_emb [N, D]) of N clips described by meta; rows get L2-normalised."""
        # `ivf` trains its k-means quantiser on `train_size` clips (default min(N, 64 nlist)) drawn with
        # `seed`; nprobe / ef_search are the defaults for queries and are saved with the index.
        if kind not in INDEX_KINDS:
            raise Action2SoundError(f"unknown index kind {kind!r}; use one of {', '.join(INDEX_KINDS)}")
        table = meta if isinstance(meta, IndexMeta) else IndexMeta.from_entries(meta)
        audio = _normalised(audio_emb, "audio embeddings")
        n, dim = audio.shape
        if len(table) != n:
            raise Action2SoundError(f"{n} audio embeddings but {len(table)} metadata rows; give one row per clip")
        video = None if video_emb is None else _normalised(video_emb, "video embeddings", dim)
        if video is not None and len(video) != n:
            raise Action2SoundError(f"{len(video)} video embeddings but {n} audio embeddings; give one per clip")
        if kind == "ivf":
            nlist = default_nlist(n) if nlist is None else int(nlist)
            if not 1 <= nlist <= n:
                raise Action2SoundError(f"nlist {nlist} must be between 1 and the number of clips ({n})")
        settings = SearchSettings(nlist=nlist if kind == "ivf" else 0, nprobe=int(nprobe), hnsw_m=int(hnsw_m),
                                  ef_construction=int(ef_construction), ef_search=int(ef_search))
        rng = np.random.default_rng(seed)
        train_rows = None
        if kind == "ivf":
            size = min(n, train_size or 64 * settings.nlist)
            # One sample for both spaces keeps the build reproducible from `seed` alone.
            train_rows = np.sort(rng.choice(n, size=size, replace=False)) if size < n else None
        spaces = [_build_faiss(x, kind, settings, train_rows, seed) if x is not None else None
                  for x in (audio, video)]
        return cls(spaces[0], spaces[1], table, kind, settings, model_hash)

    def save(self, folder: str | Path) -> Path:
        """Write the index to `folder` (created if needed); index.json last, so a half-written folder won't load."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stale = folder / _JSON_NAME
        if stale.exists():
            stale.unlink()
        for space, index in self._spaces.items():
            path = folder / _SPACE_FILES[space]
            if index is not None:
                faiss.write_index(index, str(path))
            elif path.exists():
                path.unlink()
        self.meta.save(folder / _CLIPS_NAME)
        info = {
            "format_version": FORMAT_VERSION, "kind": self.kind, "dim": self.dim, "count": len(self),
            "metric": "cosine (inner product of L2-normalised embeddings)",
            "spaces": [s for s, ix in self._spaces.items() if ix is not None],
            "model_hash": self.model_hash, "settings": vars(self.settings),
        }
        (folder / _JSON_NAME).write_text(json.dumps(info, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, expect_model_hash: str | None = None) -> AudioIndex:
        """Read a folder written by save(); a clear error when files are missing, damaged or from another model."""
        folder = Path(folder)
        fix = "rebuild it with `action2sound index build`"
        if not folder.is_dir():
            raise Action2SoundError(f"index folder {folder} does not exist; build one with `action2sound index build`")
        try:
            info = json.loads((folder / _JSON_NAME).read_text())
            kind, dim, count = info["kind"], int(info["dim"]), int(info["count"])
            spaces = list(info["spaces"])
            settings = SearchSettings(**info["settings"])
            version = int(info["format_version"])
        except FileNotFoundError:
            raise Action2SoundError(f"index folder {folder} has no {_JSON_NAME} (not an index, or its writing "
                                    f"was interrupted); {fix}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise Action2SoundError(f"{folder / _JSON_NAME} is damaged ({e}); {fix}") from None
        if version != FORMAT_VERSION or kind not in INDEX_KINDS or "audio" not in spaces:
            raise Action2SoundError(f"{folder / _JSON_NAME} describes an index this version cannot read "
                                    f"(format {version}, kind {kind!r}); {fix}")
        model_hash = str(info.get("model_hash", ""))
        if expect_model_hash is not None and model_hash != expect_model_hash:
            raise Action2SoundError(f"index folder {folder} was built with model {model_hash or '(unknown)'}, "
                                    f"not {expect_model_hash}; {fix} for this model")
        indexes: dict[str, faiss.Index | None] = {"audio": None, "video": None}
        for space in spaces:
            path = folder / _SPACE_FILES[space]
            if not path.is_file():
                raise Action2SoundError(f"index folder {folder} is missing {path.name}; {fix}")
            try:
                index = faiss.read_index(str(path))
            except RuntimeError:
                raise Action2SoundError(f"{path} is not a readable faiss index; {fix}") from None
            if index.ntotal != count or index.d != dim or _kind_of(index) != kind:
                raise Action2SoundError(
                    f"{path} holds {index.ntotal} {index.d}-d vectors ({_kind_of(index)}) but {_JSON_NAME} says "
                    f"{count} {dim}-d ({kind}); the folder mixes two builds, {fix}")
            indexes[space] = index
        try:
            meta = IndexMeta.load(folder / _CLIPS_NAME)
        except FileNotFoundError:
            raise Action2SoundError(f"index folder {folder} is missing {_CLIPS_NAME}; {fix}") from None
        except (ValueError, KeyError, OSError) as e:
            raise Action2SoundError(f"{folder / _CLIPS_NAME} is damaged ({e}); {fix}") from None
        if len(meta) != count:
            raise Action2SoundError(f"{folder / _CLIPS_NAME} has {len(meta)} clips but the index has {count}; "
                                    f"the folder mixes two builds, {fix}")
        return cls(indexes["audio"], indexes["video"], meta, kind, settings, model_hash)

    def with_search(self, nprobe: int | None = None, ef_search: int | None = None) -> AudioIndex:
        """The same index (shared faiss data) with other query-time settings: IVF nprobe, HNSW efSearch."""
        s = self.settings
        changed = replace(s, nprobe=s.nprobe if nprobe is None else int(nprobe),
                          ef_search=s.ef_search if ef_search is None else int(ef_search))
        if changed.nprobe < 1 or changed.ef_search < 1:
            raise Action2SoundError(f"nprobe and ef_search must be at least 1, got {nprobe}, {ef_search}")
        return AudioIndex(self._spaces["audio"], self._spaces["video"], self.meta, self.kind, changed,
                          self.model_hash)

    # ---------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self.meta)

    @property
    def has_video(self) -> bool:
        """Whether the clips' video embeddings are indexed too."""
        return self._spaces["video"] is not None

    def query(self, emb: np.ndarray, k: int = 1, exclude_video_ids: Sequence[str | None] | None = None,
              space: Space = "audio") -> list[list[Hit]]:
        """Top-k clips [Q][k] for each query emb [Q, D] (or [D]), best first, by cosine in `space`."""
        # The paper's rule is a *video* embedding queried against the clips' *audio* (space="audio").
        # exclude_video_ids[q] names query q's own long video: its clips are skipped and k others returned.
        if space not in self._full:
            have = ", ".join(self._full)
            raise Action2SoundError(f"this index holds no {space} embeddings (it has: {have}); "
                                    "query space='audio' or rebuild with video embeddings")
        q = _normalised(emb, "query embeddings", self.dim)
        return self._search(self._full[space], q, k, self._exclusion(exclude_video_ids, len(q)),
                            approximate=self.kind != "exact")

    def quiet(self, query_video_emb: np.ndarray, k: int = 1, quantile: float = 0.1,
              exclude_video_ids: Sequence[str | None] | None = None) -> list[list[Hit]]:
        """Top-k [Q][k] among the `quantile` lowest-ambient clips for each query [Q, D], visually closest first."""
        # "Visually" uses the clips' video embeddings when indexed, else their audio (the cross-modal rule).
        # The quiet set is the ceil(quantile * N) clips of lowest ambient_db (ties: lower row first).
        if not 0.0 < quantile <= 1.0:
            raise Action2SoundError(f"quiet quantile must be in (0, 1], got {quantile}")
        space = "video" if self.has_video else "audio"
        q = _normalised(query_video_emb, "query embeddings", self.dim)
        subset = self._quiet_subset(space, quantile)
        # The quiet set is a small slice, so it is searched exactly whatever the index kind.
        return self._search(subset, q, k, self._exclusion(exclude_video_ids, len(q)), approximate=False)

    def quiet_rows(self, quantile: float = 0.1) -> np.ndarray:
        """Rows [M] of the ceil(quantile * N) lowest-ambient clips, quietest first."""
        m = max(1, math.ceil(quantile * len(self) - 1e-9))
        return np.argsort(self.meta.ambient_db, kind="stable")[:m]

    def _quiet_subset(self, space: str, quantile: float) -> _Subset:
        key = (space, float(quantile))
        if key not in self._quiet_cache:
            rows = self.quiet_rows(quantile)
            flat = faiss.IndexFlatIP(self.dim)
            flat.add(_reconstruct(self._spaces[space], rows))
            self._quiet_cache[key] = _Subset(flat, rows, self.meta.video_codes, len(self.meta.video_names))
        return self._quiet_cache[key]

    def _exclusion(self, exclude_video_ids: Sequence[str | None] | None, n_queries: int) -> np.ndarray:
        if exclude_video_ids is None:
            return np.full(n_queries, -1, dtype=np.int64)
        if isinstance(exclude_video_ids, str) or len(exclude_video_ids) != n_queries:
            raise Action2SoundError(f"exclude_video_ids must be a list with one entry (a video id or None) per "
                                    f"query: {n_queries} queries")
        return np.array([self.meta.video_code(v) for v in exclude_video_ids], dtype=np.int64)

    def _search(self, subset: _Subset, q: np.ndarray, k: int, excl: np.ndarray, approximate: bool
                ) -> list[list[Hit]]:
        """Top-k of each query in `subset`, skipping the rows of video code excl[i] (-1: none)."""
        total = subset.index.ntotal
        own = np.where(excl >= 0, subset.counts[np.maximum(excl, 0)], 0)
        if k < 1:
            raise Action2SoundError(f"k must be at least 1, got {k}")
        short = np.flatnonzero(k > total - own)
        if short.size:
            i = int(short[0])
            raise Action2SoundError(f"asked for k={k} clips but only {total - own[i]} are eligible "
                                    f"(of {total} searched, {own[i]} from the excluded video); lower k")
        # Exhaustive search: k + (clips of the excluded video) results always contain the k best others.
        depth = np.minimum(k + own, total)
        rows = np.full((len(q), k), -1, dtype=np.int64)
        scores = np.zeros((len(q), k), dtype=np.float32)
        pending = np.arange(len(q))
        widen = 1
        while pending.size:
            kd = int(depth[pending].max())
            params, exhaustive = self._params(subset, widen, kd, excl[pending]) if approximate else (None, True)
            dist, ids = subset.index.search(q[pending], kd, params=params)
            codes = np.where(ids >= 0, subset.codes[np.maximum(ids, 0)], -2)
            keep = (ids >= 0) & (codes != excl[pending, None])
            keep &= np.cumsum(keep, axis=1) <= k
            done = keep.sum(axis=1) == k
            for j in np.flatnonzero(done):
                rows[pending[j]] = ids[j, keep[j]]
                scores[pending[j]] = dist[j, keep[j]]
            pending = pending[~done]
            if pending.size and exhaustive:
                if not approximate:
                    raise AssertionError("an exhaustive search returned fewer results than it must")
                # An approximate structure that cannot reach k others (e.g. a disconnected HNSW region):
                # scan exactly rather than return fewer than k.
                for i in pending:
                    rows[i], scores[i] = self._scan(subset, q[i], k, excl[i])
                break
            widen *= 2
            depth[pending] = np.minimum(depth[pending] * 2, total)
        if subset.rows is not None:
            rows = subset.rows[rows]
        return [[Hit(int(r), str(self.meta.clip_id[r]), str(self.meta.video_id[r]), float(s))
                 for r, s in zip(rr, ss)] for rr, ss in zip(rows, scores)]

    def _params(self, subset: _Subset, widen: int, kd: int, excl: np.ndarray
                ) -> tuple[faiss.SearchParameters, bool]:
        """Search parameters of one round, and whether that round visits everything (widening can't help)."""
        # The beam is widened by what the excluded video can occupy, so the other videos get about the
        # same search effort as an unfiltered query; further doubling only if k others are still missing.
        s = self.settings
        own = excl[excl >= 0]
        total = subset.index.ntotal
        if self.kind == "ivf":
            nprobe = min(s.nlist, s.nprobe * widen + (int(subset.cells[own].max()) if own.size else 0))
            return faiss.SearchParametersIVF(nprobe=nprobe), nprobe >= s.nlist and kd >= total
        ef = max(s.ef_search * widen + (int(subset.counts[own].max()) if own.size else 0), kd)
        return faiss.SearchParametersHNSW(efSearch=ef), ef >= total and kd >= total

    def _scan(self, subset: _Subset, q: np.ndarray, k: int, excl: int) -> tuple[np.ndarray, np.ndarray]:
        allowed = np.flatnonzero(subset.codes != excl)
        vecs = _reconstruct(subset.index, allowed)
        s = vecs @ q
        best = np.argsort(-s, kind="stable")[:k]
        return allowed[best], s[best]


def _build_faiss(x: np.ndarray, kind: str, s: SearchSettings, train_rows: np.ndarray | None,
                 seed: int) -> faiss.Index:
    dim = x.shape[1]
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        quantiser = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantiser, dim, s.nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(seed)
        index.train(x if train_rows is None else x[train_rows])
        index.nprobe = s.nprobe
    else:
        index = faiss.IndexHNSWFlat(dim, s.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = s.ef_construction
        index.hnsw.efSearch = s.ef_search
    index.add(x)
    if kind == "ivf":
        index.make_direct_map()  # lets quiet() and the exact fallback read vectors back by row
    return index


def _kind_of(index: faiss.Index) -> str:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexFlat):
        return "exact"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    return type(index).__name__


def _reconstruct(index: faiss.Index, rows: np.ndarray) -> np.ndarray:
    """Stored vectors [len(rows), D] of an index, read back by row."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIVF) and index.direct_map.type == faiss.DirectMap.NoMap:
        index.make_direct_map()
    return index.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64))
