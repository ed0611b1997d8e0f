"""An index folder as generation uses it: the faiss index, its clips' latents, and the store they came from.

`build_index_from_store` writes one from a pre-encoded store (`action2sound index build`): the `retrieval`
index (audio + video embeddings, ids, media, ambient levels), LATENTS_NPY (each clip's VAE posterior mean, so
a shipped index conditions without the training store or the clips' media) and SOURCE_JSON (where the store
is). `load_retrieval` reads one back as a `Retrieval`.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import Preset, preset_from_dict
from .data.store import Store
from .errors import Action2SoundError
from .retrieval import AudioIndex, IndexMeta
from .weights import read_model_json

SOURCE_JSON = "source.json"  # beside an index built from a store: where that store is
LATENTS_NPY = "latents.npy"  # beside an index built from a store: each clip's VAE posterior mean [N, C, F, W]
INDEX_DIRNAME = "index"  # a model directory may carry its retrieval index in this sub-folder


@dataclass
class Retrieval:
    """A loaded index, the folder it lives in, and the store its clips' latents can be read from (or None)."""

    index: AudioIndex
    folder: Path
    store: Store | None = None
    # The clips' posterior means, carried by the index itself so that a shipped index conditions without the
    # training store or the clips' media.
    latents: np.ndarray | None = None
    _store_rows: dict[str, int] | None = field(default=None, repr=False)
    _paths: np.ndarray | None = field(default=None, repr=False)

    def media_path(self, row: int) -> Path:
        """The clip's media file (index paths are relative to the index folder unless absolute)."""
        p = Path(str(self.index.meta.media_path[row]))
        return p if p.is_absolute() else self.folder / p

    def store_row(self, row: int) -> int | None:
        """The store row of index row `row` (by clip id), or None without a store or when it is not there."""
        if self.store is None:
            return None
        cid = str(self.index.meta.clip_id[row])
        if row < len(self.store.table) and self.store.table[row].clip_id == cid:
            return row  # built from this store: same order
        if self._store_rows is None:
            self._store_rows = {c.clip_id: i for i, c in enumerate(self.store.table)}
        return self._store_rows.get(cid)

    def own_video(self, path: str | os.PathLike) -> str | None:
        """The long-video id of an input that is one of the indexed clips (or their long video), else None.

        Matched by id: the file's stem as a clip id or as a long-video id, or its path as an indexed media path.
        """
        meta = self.index.meta
        stem = Path(path).stem
        hit = np.flatnonzero(meta.clip_id == stem)
        if hit.size:
            return str(meta.video_id[hit[0]])
        if meta.video_code(stem) >= 0:
            return stem
        if self._paths is None:
            self._paths = np.array([os.path.normpath(str(self.media_path(i))) for i in range(len(meta))], dtype=object)
        hit = np.flatnonzero(self._paths == os.path.normpath(str(Path(path).absolute())))
        return str(meta.video_id[hit[0]]) if hit.size else None


def load_retrieval(folder: str | os.PathLike, av_hash: str | None = None,
                   preset: Preset | None = None) -> Retrieval:
    """Load an index folder (and the store its source.json names, when it is there and fits the model)."""
    folder = Path(folder)
    index = AudioIndex.load(folder, expect_model_hash=av_hash or None)
    store = None
    src = folder / SOURCE_JSON
    if src.is_file():
        ref = Path(json.loads(src.read_text()).get("store", ""))
        path = ref if ref.is_absolute() else folder / ref
        if (path / "store.json").is_file():
            store = Store(path)
            if preset is not None and (store.preset.vae != preset.vae or store.preset.audio != preset.audio):
                warnings.warn(f"{path}: this store was encoded with another VAE or audio profile than the model; "
                              "its latents are ignored and each retrieved clip's audio is read instead "
                              "(re-run preencode with this model to speed this up)", stacklevel=2)
                store = None
    latents = np.load(folder / LATENTS_NPY, mmap_mode="r") if (folder / LATENTS_NPY).is_file() else None
    if latents is not None and len(latents) != len(index.meta):
        raise Action2SoundError(f"{folder / LATENTS_NPY} has {len(latents)} rows for {len(index.meta)} indexed clips; "
                                "rebuild the index with `action2sound index build`")
    return Retrieval(index, folder, store, latents)


def build_index_from_store(store_dir: str | os.PathLike, model_dir: str | os.PathLike, out: str | os.PathLike,
                           kind: str = "exact", nlist: int | None = None) -> Path:
    """Index a store's clips (audio + video embeddings, ids, media, ambient levels) for a model -> the folder."""
    store = Store(store_dir)
    manifest = read_model_json(model_dir)
    preset = preset_from_dict(manifest["preset"])
    if "av" not in manifest.get("files", {}):
        raise Action2SoundError(f"{model_dir}: the model directory has no AV model; retrieval needs one")
    if store.preset.av.embed_dim != preset.av.embed_dim or store.preset.video != preset.video:
        raise Action2SoundError(f"store {store_dir} was encoded by another AV model than {model_dir}'s (embedding "
                                f"{store.preset.av.embed_dim}-d vs {preset.av.embed_dim}-d, or another video "
                                "config); re-run preencode with this model")
    if store.preset.vae != preset.vae or store.preset.audio != preset.audio:
        raise Action2SoundError(f"store {store_dir} was encoded with another VAE or audio profile than "
                                f"{model_dir}'s; its latents cannot condition this model, re-run preencode with it")
    out = Path(out)
    table = store.table
    meta = IndexMeta(
        clip_id=[c.clip_id for c in table], video_id=[c.video_id for c in table],
        # Relative to the index folder, so index and data can move together.
        media_path=[os.path.relpath(os.path.abspath(c.media_path), os.path.abspath(out)) for c in table],
        media_start=[c.media_start for c in table], media_end=[c.media_end for c in table],
        ambient_db=store.column("ambient_db").astype(np.float64),
    )
    index = AudioIndex.build(store.column("audio_emb"), store.column("video_emb"), meta, kind=kind, nlist=nlist,
                             model_hash=manifest["files"]["av"]["sha256"])
    index.save(out)
    # float16: half the size (the embedded model's index), a rounding of ~5e-4 of a latent's scale.
    np.save(out / LATENTS_NPY, store.column("latent_mean").astype(np.float16))
    (out / SOURCE_JSON).write_text(json.dumps(
        {"store": os.path.relpath(os.path.abspath(store_dir), os.path.abspath(out))}, indent=1) + "\n")
    return out
