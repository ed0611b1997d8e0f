"""benchmarks/codec_kind.py: the event kind a ground truth keeps through a VAE and the vocoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from action2sound.benchmark.groundtruth import load_clip_groundtruth
from action2sound.evaluation import benchmark_metrics as bm
from action2sound.evaluation.clips import load_eval_clips
from action2sound.evaluation.measure import fit_kind_classifier
from action2sound.pipeline import load_pipeline

_spec = importlib.util.spec_from_file_location("codec_kind", Path(__file__).parents[1] / "benchmarks" / "codec_kind.py")
codec_kind = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(codec_kind)


def test_codec_kind_counts_every_visible_contact_and_only_a_vae_changes_the_mel(env):
    clips = [c for c in load_eval_clips(env.bench, "test", 6) if c.groundtruth is not None]
    kinds = fit_kind_classifier(clips)
    assert clips and kinds is not None
    pipe = load_pipeline(env.model, device="cpu")
    contacts = sum(bm.kind_accuracy(kinds, g.mix, g.sample_rate, g.events)[1]
                   for g in (load_clip_groundtruth(c.groundtruth) for c in clips))
    assert contacts > 0
    plain = codec_kind.codec_kind(pipe, None, clips, kinds)
    coded = codec_kind.codec_kind(pipe, pipe.vae, clips, kinds)
    for res in (plain, coded):
        assert [res[s][1] for s in codec_kind.STEMS] == [contacts, contacts]  # the same contacts for each stem
        assert all(0 <= h <= n for h, n, _ in res.values())
    assert all(l1 == 0.0 for _, _, l1 in plain.values())  # no VAE: the mel as it is
    assert all(l1 > 0.01 for _, _, l1 in coded.values())  # the tiny random VAE cannot reproduce it
