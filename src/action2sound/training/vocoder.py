"""Stage vocoder: HiFi-GAN V1 (generator + multi-period and multi-scale discriminators).

Losses as in HiFi-GAN (Kong et al. 2020, eq. 5-7): LSGAN adversarial terms, feature matching (weight
lambda_fm) and mel L1 (weight lambda_mel) on random segments of the clips. The universal22k profile with
`vocoder.source = universal` fine-tunes the shipped universal generator instead of starting from scratch;
any other profile can start from it too (`universal_init`, `train vocoder --init universal`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import UNIVERSAL22K_AUDIO, Preset, StageTrainConfig
from ..errors import Action2SoundError
from ..mel import MelTransform
from ..mel_bridge import frequency_map
from ..models.vocoder import (
    HifiGanDiscriminator,
    apply_weight_norm,
    build_hifigan,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    load_universal_hifigan,
    mel_l1_loss,
    vocode,
)
from ..weights import load_state_strict
from .base import StageModule


INIT_UNIVERSAL = "universal"  # `train vocoder --init universal`


def universal_init(preset: Preset) -> dict[str, torch.Tensor]:
    """The universal generator's weights for the preset's profile: a starting point to fine-tune.

    Every layer is the universal one but the input convolution, which reads the profile's log mel instead of
    the universal 80-band one: its weights are composed with the bridge's frequency map (`mel_bridge`),
    linearised in the log domain, log u_j ~ sum_k A_jk log m_k + log s_j with A the map's rows normalised to
    sum 1 and s_j their sums (exact where the spectrum is flat across a band). The rest of the network then
    runs at the profile's rate, which fine-tuning has to adapt to.
    """
    from ..models.vocoder import load_universal_hifigan

    universal = load_universal_hifigan().state_dict()
    target = build_hifigan(preset.audio, preset.vocoder).state_dict()
    out = {}
    for key, value in universal.items():
        if key in ("mean", "scale"):  # per-mel input normalisation buffers, unused (normalize_before is off)
            out[key] = target[key]
            continue
        if key not in target or (key != "conv_pre.weight" and target[key].shape != value.shape):
            raise Action2SoundError(
                f"--init universal: the preset's vocoder section differs from the universal HiFi-GAN at {key!r}; "
                "use its architecture (the default vocoder section: 512 channels, rates 8 8 2 2)")
        out[key] = value
    fmap = frequency_map(preset.audio.name, UNIVERSAL22K_AUDIO.name)  # [80, n_mels] magnitude -> magnitude
    sums = fmap.sum(axis=1)
    a = torch.from_numpy(fmap / sums[:, None]).float()  # [80, n_mels], rows sum to 1
    w = universal["conv_pre.weight"]  # [C, 80, K]
    out["conv_pre.weight"] = torch.einsum("cjk,jm->cmk", w, a).contiguous()  # [C, n_mels, K]
    out["conv_pre.bias"] = universal["conv_pre.bias"] + torch.einsum(
        "cjk,j->c", w, torch.from_numpy(np.log(sums)).float())
    if out["conv_pre.weight"].shape != target["conv_pre.weight"].shape:
        raise Action2SoundError(f"--init universal: conv_pre {tuple(out['conv_pre.weight'].shape)} vs the preset's "
                                f"{tuple(target['conv_pre.weight'].shape)}")
    return out


class VocoderStage(StageModule):
    """GAN training with manual optimisation: one discriminator step, then one generator step, per batch."""

    component = "vocoder"
    optimizer_steps_per_batch = 2

    def __init__(self, preset: Preset, train_cfg: StageTrainConfig, seed: int = 0, train_size: int = 1):
        super().__init__(preset, train_cfg, seed, train_size)
        self.automatic_optimization = False
        generator = build_hifigan(preset.audio, preset.vocoder)
        if preset.vocoder.source == "universal":
            # Fine-tune the shipped generator: the preset's vocoder section must describe its architecture.
            load_state_strict(generator, load_universal_hifigan().state_dict(),
                              "the universal HiFi-GAN (vocoder.source=universal)")
        self.generator = apply_weight_norm(generator)  # HiFi-GAN trains the generator weight-normalised
        self.discriminator = HifiGanDiscriminator(preset.vocoder)
        self.log_mel = MelTransform(preset.audio, normalised=False)
        self._val = torch.zeros(2, dtype=torch.float64)

    def trainable(self) -> torch.nn.Module:
        return self.generator

    def init_from(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Start from a plain (weight-norm folded) generator's weights, e.g. an exported vocoder."""
        plain = build_hifigan(self.preset.audio, self.preset.vocoder)
        load_state_strict(plain, tensors, source)
        self.generator = apply_weight_norm(plain)

    def configure_optimizers(self):
        opt_g, sched_g = self.make_optimizer(self.generator.parameters())
        opt_d, sched_d = self.make_optimizer(self.discriminator.parameters())
        return [opt_g, opt_d], [sched_g, sched_d]

    def segment(self, wave: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random hop-aligned crop of segment_samples from each wave [B, N] -> [B, segment_samples]."""
        hop = self.preset.audio.hop
        seg = min(self.preset.vocoder.segment_samples // hop * hop, wave.shape[-1] // hop * hop)
        starts = torch.randint(0, (wave.shape[-1] - seg) // hop + 1, (wave.shape[0],), generator=generator,
                               device=generator.device) * hop
        return torch.stack([w[int(s):int(s) + seg] for w, s in zip(wave, starts)])

    def generate(self, wave: torch.Tensor) -> torch.Tensor:
        """Re-synthesise waves [B, N] from their own log mel -> [B, N]."""
        fake = vocode(self.generator, self.log_mel(wave.float()))
        return fake[..., : wave.shape[-1]]

    def training_step(self, batch: dict, batch_idx: int) -> None:
        cfg = self.preset.vocoder
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        real = self.segment(batch["wave"], self.step_generator("cpu"))
        clip = self.train_cfg.grad_clip or None
        fake = self.generate(real)

        # Discriminator: real vs the generator's output, which it must not push gradients into.
        logits_real, _ = self.discriminator(real)
        logits_fake, _ = self.discriminator(fake.detach())
        d_loss = discriminator_loss(logits_real, logits_fake)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        if clip:
            self.clip_gradients(opt_d, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        opt_d.step()
        sched_d.step()

        # Generator: fool the updated discriminator, match its features on real audio, and match the mel.
        logits_fake, feats_fake = self.discriminator(fake)
        with torch.no_grad():
            _, feats_real = self.discriminator(real)
        mel = mel_l1_loss(self.log_mel, fake, real)
        adv = generator_adversarial_loss(logits_fake)
        fm = feature_matching_loss(feats_real, feats_fake)
        g_loss = adv + cfg.lambda_fm * fm + cfg.lambda_mel * mel
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        if clip:
            self.clip_gradients(opt_g, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        opt_g.step()
        sched_g.step()
        # The discriminator's gradients from the generator step are stale: drop them.
        opt_d.zero_grad(set_to_none=True)

        self.batches_seen += 1
        self.log("train/loss", g_loss, prog_bar=True)
        self.log("train/mel_l1", mel, prog_bar=True)
        self.log("train/d", d_loss)
        self.log("train/adv", adv)
        self.log("train/fm", fm)

    def on_validation_epoch_start(self) -> None:
        self._val.zero_()

    @torch.no_grad()
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        wave = batch["wave"]
        err = (self.log_mel(self.generate(wave)) - self.log_mel(wave.float())).abs()
        self._val += torch.tensor([float(err.double().sum()), err.numel()], dtype=torch.float64)

    def on_validation_epoch_end(self) -> None:
        total, n = self._val.tolist()
        if n:
            self.log("val/mel_l1", total / n)

    @torch.no_grad()
    def export_tensors(self) -> dict[str, torch.Tensor]:
        """The plain generator's state dict, weight norm folded (w = g v / |v|), the live generator untouched."""
        # Not remove_weight_norm on a deepcopy: a parametrised module's class is shared with its copies, and
        # removing the parametrisation from one deletes the `weight` property of all.
        plain = build_hifigan(self.preset.audio, self.preset.vocoder).state_dict()
        out = {}
        for name in plain:
            owner, _, attr = name.rpartition(".")
            module = self.generator.get_submodule(owner) if owner else self.generator
            out[name] = getattr(module, attr).detach().clone()
        return out
