"""The pre-encoded store: the frozen networks run once per clip, and diffusion training reads only this.

The frozen ViT costs more per clip than a UNet training step (SPEC §6), so it runs once, here, and never inside
the diffusion loop. A store is a folder::

    store.json          format, the preset (its av + vae sections are those of the encoding networks), the
                        fields {name: [shape, dtype]}, shard_size, num_clips, and the SHA-256 of the networks
    clips.tsv           the clip table in store order: row i of the store is clip i
    shards/000000/      one folder per shard of `shard_size` clips: <field>.npy [clips of the shard, *shape]

Fields: `video_tokens` [T, D] (per-frame max-pooled backbone tokens, float16), `video_emb` / `audio_emb` [E]
(unit embeddings for retrieval), `latent_mean` / `latent_std` [C, F, W] (the VAE posterior of the clip's mel,
unscaled: training samples it), `ambient_db` [] (energy of the quietest 0.5 s window, dB), and, when the
preset's sync stream is on and the encoding model has a sync encoder, `sync_features` [W, D_s] (one vector per
latent column, models/sync_stream.py; float16).

Restartable: a shard is written under `shards/.000012.partial-<pid>/` and renamed when complete, so a killed
run leaves no half shard in place, and a rerun skips finished shards. Several processes share the work by
shard: rank r of `world` encodes the shards s with s % world == r (torchrun / SLURM ranks, or `--rank`).

Complete means checked: each shard folder holds `shard.json`, written last, with every file's size and SHA-256
(and the record's own SHA-256). A rerun of preencode and every Store open check each shard's file sizes
against its record and each .npy header against its size (a stat and a 128-byte read per file: a cut-off copy,
a full disk or a kill shows as a wrong size); a rerun redoes a damaged shard, Store refuses it naming the file.
Rehashing every byte (`checksums=True`) reads the whole store (tens of GB for the paper's data), so it is
asked for, not done on every open. Stores written before shard.json existed are checked by their headers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import Preset, preset_from_dict
from ..errors import Action2SoundError
from .manifest import Clip, ClipTable

FORMAT = "action2sound-store/1"
STORE_JSON = "store.json"
CLIPS_TSV = "clips.tsv"
SHARDS = "shards"
SHARD_JSON = "shard.json"
SHARD_FORMAT = "action2sound-shard/1"
AMBIENT_WINDOW_S = 0.5
log = logging.getLogger(__name__)


def store_fields(preset: Preset, sync: bool = True) -> dict[str, tuple[tuple[int, ...], str]]:
    """{field: (per-clip shape, numpy dtype name)} of a store encoded with this preset's networks.

    sync: whether the encoding networks include a sync encoder; `sync_features` is a field only then and only
    when the preset's stream is enabled.
    """
    from ..models.sync_stream import stream_dim

    latent = tuple(preset.latent_shape)
    sync_fields = {"sync_features": ((latent[2], stream_dim(preset.sync_stream)), "float16")} \
        if sync and preset.sync_stream.enabled else {}
    return {
        "video_tokens": ((preset.video.num_frames, preset.av.video_hidden), "float16"),
        "video_emb": ((preset.av.embed_dim,), "float32"),
        "audio_emb": ((preset.av.embed_dim,), "float32"),
        "latent_mean": (latent, "float32"),
        "latent_std": (latent, "float32"),
        "ambient_db": ((), "float32"),
        **sync_fields,
    }


# ---------------------------------------------------------------------------------------------- decoding
def action_track(media_path: str | os.PathLike) -> Path | None:
    """The action-only sound of a video, where one lies beside it: `NAME.action.wav` next to `NAME.<ext>` (as
    the benchmark writes its episodes; a symbolic link to the video is followed first), else None."""
    path = Path(media_path).resolve()
    track = path.with_name(path.stem + ".action.wav")
    return track if track.is_file() else None


def decode_clip(clip: Clip, preset: Preset, frames: bool = True, audio: bool = True,
                sync: bool = False, onset_track: bool = False) -> dict[str, np.ndarray]:
    """One clip -> {"frames": uint8 [T, S, S, 3], "wave": float32 [num_samples], "mel": float32 [n_mels, padded],
    "sync_frames": uint8 [N, s, s, 3] (with `sync`), "sync_detail": uint8 [N, a, a, 3] (with `sync`, when the
    stream has appearance: the same times at sync_stream.appearance_size), "onset_mel" (with `onset_track` and
    `audio`)}.

    `onset_mel` is the mel of the same span of the video's action track (`action_track`) where it has one, else
    the clip's own mel: what the sync encoder's onset head learns to find.

    Frames are spread over the clip (VideoConfig); the audio is the clip resampled to the profile's rate and
    fitted (cut / zero-padded on the right) to one model window; the sync stream's frames are read at
    `sync_frame_times` from the clip's start (the video's nearest frames where its rate is lower), squashed to
    sync_stream.size.
    """
    from .. import media
    from ..mel import fit_wave, wave_to_mel
    from ..models.sync_stream import sync_frame_times

    out: dict[str, np.ndarray] = {}
    if frames:
        v = preset.video
        out["frames"] = media.read_frames(clip.media_path, clip.media_start, clip.duration, v.num_frames,
                                          size=v.size, resize=v.resize)
    if sync:
        times = clip.media_start + sync_frame_times(preset)
        sizes = [preset.sync_stream.size] + ([preset.sync_stream.appearance_size]
                                             if preset.sync_stream.appearance_size else [])
        dense = media.read_frames_at_sizes(clip.media_path, [(times, size) for size in sizes],
                                           resize=preset.video.resize)  # one decoding pass for both sizes
        out["sync_frames"] = dense[0]
        if len(dense) > 1:
            out["sync_detail"] = dense[1]
    if audio:
        p = preset.audio
        wave = fit_wave(media.read_audio(clip.media_path, clip.media_start, clip.duration, p.sample_rate), p)
        out["wave"] = wave
        out["mel"] = wave_to_mel(wave, p)
        if onset_track:
            track = action_track(clip.media_path)
            out["onset_mel"] = out["mel"] if track is None else wave_to_mel(
                fit_wave(media.read_audio(track, clip.media_start, clip.duration, p.sample_rate), p), p)
    return out


class ClipDataset(Dataset):
    """Decodes clips of a table: item i -> {"index", "video_code", "frames"?, "wave"?, "mel"?, "sync_frames"?}
    (see decode_clip).

    `video_code` is the clip's long video as an int (for same-video negatives). An item may be asked for as an
    int or as an (index, epoch) pair, the form the training sampler gives.
    """

    def __init__(self, table: ClipTable, preset: Preset, frames: bool = True, audio: bool = True,
                 cache_bytes: int = 0, sync: bool = False, onset_track: bool = False):
        self.table, self.preset, self.frames, self.audio, self.sync = table, preset, frames, audio, sync
        self.onset_track = onset_track
        codes: dict[str, int] = {}
        self.video_codes = np.array([codes.setdefault(c.video_id, len(codes)) for c in table], dtype=np.int64)
        # Decoded clips are kept (per process) until `cache_bytes` are used: a small training set, seen many
        # times, is decoded once. Decoding is deterministic, so a cached clip is the clip.
        self.cache_bytes = cache_bytes
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        i = item[0] if isinstance(item, tuple) else item
        decoded = self._cache.get(i)
        if decoded is None:
            decoded = decode_clip(self.table[i], self.preset, self.frames, self.audio, self.sync, self.onset_track)
            size = sum(a.nbytes for a in decoded.values())
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[i] = decoded
                self._cached_bytes += size
        out: dict[str, Any] = dict(decoded)
        out["index"] = i
        out["video_code"] = self.video_codes[i]
        return out


# ------------------------------------------------------------------------------------------------ encoder
class ClipEncoder:
    """The frozen networks of a store: a decoded batch -> {field: float32 array [B, *shape]} on the CPU.

    sync_encoder: the sync stream's encoder (models/sync_stream.SyncEncoder), when the preset's stream is on;
    its `stream_features` of the clip's dense frames become the `sync_features` field.
    """

    def __init__(self, av: torch.nn.Module, vae: torch.nn.Module, preset: Preset,
                 device: str | torch.device = "cpu", source: dict[str, str] | None = None,
                 sync_encoder: torch.nn.Module | None = None):
        if sync_encoder is not None and not preset.sync_stream.enabled:
            raise Action2SoundError("a sync encoder was given but the preset's sync stream is off "
                                    "(sync_stream.enabled=false); drop the encoder or use a preset with the stream")
        self.av = av.to(device).eval()
        self.vae = vae.to(device).eval()
        self.sync_encoder = sync_encoder.to(device).eval() if sync_encoder is not None else None
        self.preset, self.device = preset, torch.device(device)
        # SHA-256 of the weights files the networks came from (recorded in store.json; a rerun checks them).
        self.source = dict(source or {})
        self.fields = store_fields(preset, sync=sync_encoder is not None)

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        from ..models.vae import encode_mel
        from ..levels import ambient_level_db

        dev = self.device
        # Autocast on GPU only: bf16 halves the ViT's cost; the CPU path stays fp32 and exact.
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else _nullcontext()
        wave, mel = batch["wave"].to(dev), batch["mel"].to(dev)
        audio_in = self.av.audio_input(wave=wave, mel=mel)  # fbank / mel in fp32: a log of a bf16 sum is coarse
        with amp:
            tokens, video_emb = self.av.encode_frames(batch["frames"].to(dev))  # [B, T, D], [B, E]: one pass
            audio_emb = self.av.embed_audio(audio_in).float()
        mean, std = encode_mel(self.vae, mel)  # the VAE in fp32: its posterior is the training target
        rate = self.preset.audio.sample_rate
        ambient = [ambient_level_db(w, rate, AMBIENT_WINDOW_S) for w in batch["wave"].numpy()]
        out = {
            "video_tokens": tokens.float().cpu().numpy(),
            "video_emb": video_emb.cpu().numpy(),
            "audio_emb": audio_emb.cpu().numpy(),
            "latent_mean": mean.float().cpu().numpy(),
            "latent_std": std.float().cpu().numpy(),
            "ambient_db": np.asarray(ambient, dtype=np.float32),
        }
        if self.sync_encoder is not None:
            # fp32: the features are small, and the store keeps them as float16 anyway.
            detail = batch["sync_detail"].to(dev) if "sync_detail" in batch else None
            out["sync_features"] = self.sync_encoder.stream_features(batch["sync_frames"].to(dev),
                                                                     detail).float().cpu().numpy()
        return out


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --------------------------------------------------------------------------------------------- the writer
@dataclass(frozen=True)
class PreencodeReport:
    """What one preencode call did."""

    store: Path
    num_clips: int
    shards_total: int
    shards_done_before: int  # finished shards found and skipped
    shards_written: int  # by this process
    clips_encoded: int  # by this process
    seconds: float
    shards_damaged: int = 0  # found damaged (failed their check), removed and written again by this process

    def summary(self) -> str:
        rate = self.clips_encoded / self.seconds if self.seconds > 0 else 0.0
        redone = f" ({self.shards_damaged} damaged ones redone)" if self.shards_damaged else ""
        return (f"store {self.store}: {self.num_clips} clips in {self.shards_total} shards; "
                f"{self.shards_done_before} were already done, this process wrote {self.shards_written}{redone} "
                f"({self.clips_encoded} clips, {rate:.1f} clips/s, {self.seconds:.1f} s)")


def shard_name(s: int) -> str:
    return f"{s:06d}"


def _table_digest(table: ClipTable) -> str:
    import hashlib

    h = hashlib.sha256()
    for c in table:
        h.update(f"{c.clip_id}\t{c.video_id}\t{c.video_start!r}\t{c.video_end!r}\n".encode())
    return h.hexdigest()


def _header(table: ClipTable, preset: Preset, fields: dict, shard_size: int, source: dict[str, str]) -> dict:
    return {
        "format": FORMAT,
        "preset": preset.to_dict(),
        "fields": {k: [list(shape), dtype] for k, (shape, dtype) in fields.items()},
        "shard_size": shard_size,
        "num_clips": len(table),
        "table_sha256": _table_digest(table),
        "source": source,
    }


def write_json_atomic(path: Path, data: dict) -> None:
    """Write data as JSON to path through a temporary name: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _prepare(out: Path, table: ClipTable, header: dict) -> None:
    """Create the store folder, or check that an existing one was made from the same clips and networks."""
    meta = out / STORE_JSON
    header = json.loads(json.dumps(header))  # compare as JSON has it (tuples become lists)
    if meta.exists():
        try:
            old = json.loads(meta.read_text())
        except json.JSONDecodeError:
            raise Action2SoundError(f"{meta} is damaged; delete the store folder {out} and run preencode again") \
                from None
        what = {"format": "store format", "preset": "preset", "fields": "set of fields", "shard_size": "shard size",
                "num_clips": "clip table", "table_sha256": "clip table", "source": "network weights"}
        for key, words in what.items():
            if old.get(key) != header[key]:
                raise Action2SoundError(
                    f"store {out} was made with another {words} than this run's; pass a new --out (or delete the "
                    "folder to re-encode everything)")
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / SHARDS).mkdir(exist_ok=True)
    # The table goes first under a private name (several ranks may race here), store.json last.
    tmp_table = out / f".clips.{os.getpid()}.tsv"
    table.save(tmp_table)
    tmp_table.replace(out / CLIPS_TSV)
    write_json_atomic(meta, header)


def _write_shard(out: Path, s: int, arrays: dict[str, np.ndarray], fields: dict) -> None:
    final = out / SHARDS / shard_name(s)
    tmp = out / SHARDS / f".{shard_name(s)}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files = {}
    for name, (_, dtype) in fields.items():
        path = tmp / f"{name}.npy"
        with open(path, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arrays[name], dtype=dtype))
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the record that vouches for it
        files[path.name] = {"bytes": path.stat().st_size, "sha256": _file_sha256(path)}
    clips = len(next(iter(arrays.values())))
    record = {"format": SHARD_FORMAT, "clips": clips, "files": files}
    record["record_sha256"] = _record_digest(record)
    with open(tmp / SHARD_JSON, "w") as fh:  # last: a shard folder without it was never finished
        fh.write(json.dumps(record, indent=1, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if final.exists():  # another rank finished the same shard first (same inputs, same result)
        shutil.rmtree(tmp)
        return
    tmp.rename(final)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _record_digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def shard_problem(folder: Path, fields: dict[str, tuple[tuple[int, ...], str]], clips: int,
                  checksums: bool = False) -> str | None:
    """What is wrong with a finished shard folder, naming the file; None when it is whole.

    Sizes against the shard's record (when it has one: stores written before shard.json have none), each
    .npy header against the clips and fields it must hold and against its file's size; with `checksums`,
    every file's SHA-256 too (reads the whole shard).
    """
    record_path = folder / SHARD_JSON
    record = None
    if record_path.exists():
        try:
            record = json.loads(record_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return f"{record_path}: not readable JSON"
        if not isinstance(record, dict) or record.get("record_sha256") != _record_digest(record):
            return f"{record_path}: its own checksum does not match (damaged or edited)"
        names = {f"{name}.npy" for name in fields}
        files = record.get("files")
        if record.get("format") != SHARD_FORMAT or record.get("clips") != clips or not isinstance(files, dict) \
                or set(files) != names:
            return f"{record_path}: describes other contents than this store's {clips} clips of {sorted(names)}"
    for name, (shape, dtype) in fields.items():
        path = folder / f"{name}.npy"
        if not path.is_file():
            return f"{path}: missing"
        size = path.stat().st_size
        if record is not None:
            want = record["files"][path.name]
            if size != want["bytes"]:
                return f"{path}: {size} bytes, its record says {want['bytes']}"
        problem = _npy_problem(path, size, (clips, *shape), np.dtype(dtype))
        if problem:
            return f"{path}: {problem}"
        if checksums and record is not None and _file_sha256(path) != record["files"][path.name]["sha256"]:
            return f"{path}: its SHA-256 differs from its record"
    return None


def _npy_problem(path: Path, size: int, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
    """Whether a .npy file's header promises the array a shard needs, and its size holds that array."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            got_shape, fortran, got_dtype = read_header(fh)
            data_start = fh.tell()
    except (ValueError, OSError, EOFError) as err:
        return f"not a readable .npy file ({err})"
    if tuple(got_shape) != tuple(shape) or got_dtype != dtype or fortran:
        return f"holds {got_dtype} {list(got_shape)}, the store needs {dtype} {list(shape)}"
    need = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != need:
        return f"{size} bytes, its header needs {need} (cut off?)"
    return None


def _rank_world(rank: int | None, world: int | None) -> tuple[int, int]:
    """This process's share of the shards: explicit, else torchrun's RANK/WORLD_SIZE, else SLURM's, else 0/1."""
    if rank is None:
        rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))
    if world is None:
        world = int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1)))
    if not 0 <= rank < world:
        raise Action2SoundError(f"rank {rank} is outside the world of {world} processes; pass 0 <= --rank < --world")
    return rank, world


class _ShardClips(Dataset):
    """The clips of a list of shards, in order: item k -> ClipDataset item of the k-th such clip."""

    def __init__(self, clips: ClipDataset, rows: np.ndarray):
        self.clips, self.rows = clips, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> dict[str, Any]:
        return self.clips[int(self.rows[k])]


def preencode(
    table: ClipTable, encoder: Callable[[dict], dict[str, np.ndarray]] | ClipEncoder, out: str | os.PathLike,
    preset: Preset | None = None, shard_size: int = 256, batch_size: int = 16, workers: int = 0,
    rank: int | None = None, world: int | None = None, progress: bool = True, checksums: bool = False,
) -> PreencodeReport:
    """Encode every clip of `table` once into the store at `out` (module docstring); returns a report.

    encoder: a ClipEncoder (or any callable of the same contract with `.fields`, `.preset`, `.source`).
    workers: decoding processes feeding the encoder (DataLoader workers). Finished shards are checked
    (sizes and headers; with `checksums`, every byte against the SHA-256 of their record) and skipped; this
    rank's damaged ones are removed and encoded again.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    out = Path(out)
    preset = preset or encoder.preset
    fields = encoder.fields
    if shard_size < 1:
        raise Action2SoundError(f"shard size must be at least 1, got {shard_size}")
    if len(table) == 0:
        raise Action2SoundError("the clip table is empty; nothing to pre-encode")
    rank, world = _rank_world(rank, world)
    _prepare(out, table, _header(table, preset, fields, shard_size, getattr(encoder, "source", {})))
    n_shards = (len(table) + shard_size - 1) // shard_size
    done, damaged = set(), 0
    for s in range(n_shards):
        folder = out / SHARDS / shard_name(s)
        if not folder.is_dir():
            continue
        clips = min((s + 1) * shard_size, len(table)) - s * shard_size
        problem = shard_problem(folder, fields, clips, checksums)
        if problem is None:
            done.add(s)
        elif s % world == rank:  # only the shard's own rank removes it: no race with its writer
            log.warning("%s; encoding shard %s again", problem, shard_name(s))
            shutil.rmtree(folder)
            damaged += 1
    mine = [s for s in range(n_shards) if s % world == rank and s not in done]
    for s in mine:  # half-written shards of a killed run: only this rank writes these shards, so they are stale
        for stale in (out / SHARDS).glob(f".{shard_name(s)}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
    rows = np.concatenate([np.arange(s * shard_size, min((s + 1) * shard_size, len(table))) for s in mine]) \
        if mine else np.zeros(0, dtype=np.int64)
    clips = ClipDataset(table, preset, sync="sync_features" in fields)
    loader = DataLoader(_ShardClips(clips, rows), batch_size=batch_size, shuffle=False,
                        num_workers=workers, persistent_workers=False)
    bar = tqdm(total=len(rows), unit="clip", desc=f"preencode rank {rank}/{world}", disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    pending: dict[str, list[np.ndarray]] = {k: [] for k in fields}
    filled = 0
    shard_iter: Iterator[int] = iter(mine)
    current = next(shard_iter, None)
    written = 0
    for batch in loader:
        encoded = encoder(batch)
        b = len(batch["index"])
        start = 0
        while start < b:
            assert current is not None
            size = min((current + 1) * shard_size, len(table)) - current * shard_size
            take = min(size - filled, b - start)
            for k in fields:
                pending[k].append(np.asarray(encoded[k][start:start + take]))
            filled += take
            start += take
            if filled == size:
                _write_shard(out, current, {k: np.concatenate(v) for k, v in pending.items()}, fields)
                written += 1
                pending = {k: [] for k in fields}
                filled = 0
                current = next(shard_iter, None)
        bar.update(b)
    bar.close()
    return PreencodeReport(store=out, num_clips=len(table), shards_total=n_shards, shards_done_before=len(done),
                           shards_written=written, clips_encoded=len(rows), seconds=time.perf_counter() - t0,
                           shards_damaged=damaged)


# --------------------------------------------------------------------------------------------- the reader
class Store:
    """Read a finished store: memory-mapped shards, opened lazily (so each DataLoader worker maps its own)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta = self.path / STORE_JSON
        if not meta.is_file():
            raise Action2SoundError(f"{self.path}: not a store (no {STORE_JSON}); make one with "
                                    "`action2sound preencode`")
        try:
            self.meta = json.loads(meta.read_text())
            if self.meta.get("format") != FORMAT:
                raise Action2SoundError(f"{meta}: format {self.meta.get('format')!r}, expected {FORMAT!r}; "
                                        "re-encode")
            self.preset = preset_from_dict(self.meta["preset"])
            self.fields = {k: (tuple(shape), dtype) for k, (shape, dtype) in self.meta["fields"].items()}
            self.shard_size = int(self.meta["shard_size"])
            self.num_clips = int(self.meta["num_clips"])
        except Action2SoundError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise Action2SoundError(f"{meta}: damaged or from another version ({err}); delete the store and run "
                                    "`action2sound preencode` again") from None
        self.num_shards = (self.num_clips + self.shard_size - 1) // self.shard_size
        missing = [s for s in range(self.num_shards) if not (self.path / SHARDS / shard_name(s)).is_dir()]
        if missing:
            raise Action2SoundError(
                f"store {self.path} is incomplete: {len(missing)} of {self.num_shards} shards missing (first "
                f"{shard_name(missing[0])}); run `action2sound preencode` again with the same --out to finish it")
        self.table = ClipTable.load(self.path / CLIPS_TSV)
        if len(self.table) != self.num_clips:
            raise Action2SoundError(f"{self.path / CLIPS_TSV} has {len(self.table)} clips, {STORE_JSON} says "
                                    f"{self.num_clips}; the store is damaged, re-encode it")
        self.check()
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    def check(self, checksums: bool = False) -> None:
        """Raise naming the first damaged shard file (see shard_problem; `checksums` rehashes every byte)."""
        for s in range(self.num_shards):
            clips = min((s + 1) * self.shard_size, self.num_clips) - s * self.shard_size
            problem = shard_problem(self.path / SHARDS / shard_name(s), self.fields, clips, checksums)
            if problem:
                raise Action2SoundError(f"store {self.path}: shard {shard_name(s)} is damaged ({problem}); rerun "
                                        "`action2sound preencode` with the same --out to redo it")

    def __len__(self) -> int:
        return self.num_clips

    def __getstate__(self) -> dict:
        # Memory maps do not travel to worker processes; each worker reopens what it reads.
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def _array(self, s: int, name: str) -> np.ndarray:
        key = (s, name)
        arr = self._maps.get(key)
        if arr is None:
            arr = np.load(self.path / SHARDS / shard_name(s) / f"{name}.npy", mmap_mode="r")
            self._maps[key] = arr
        return arr

    def get(self, name: str, i: int) -> np.ndarray:
        """Field `name` of clip i (a copy, in the stored dtype) -> [*shape]."""
        if name not in self.fields:
            raise KeyError(f"store field {name!r} not in {sorted(self.fields)}")
        if not 0 <= i < self.num_clips:
            raise IndexError(f"clip {i} outside the store's {self.num_clips}")
        s, r = divmod(int(i), self.shard_size)
        return np.array(self._array(s, name)[r])

    def row(self, i: int) -> dict[str, np.ndarray]:
        """Every field of clip i."""
        return {name: self.get(name, i) for name in self.fields}

    def column(self, name: str) -> np.ndarray:
        """Field `name` of every clip, in store order -> [num_clips, *shape] (loaded into memory)."""
        return np.concatenate([np.asarray(self._array(s, name)) for s in range(self.num_shards)])
