"""The `action2sound` command line: thin wrappers that parse arguments and call the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import Action2SoundError


def _cmd_benchmark(args: argparse.Namespace) -> None:
    from .benchmark import build_benchmark

    bank = args.bank if args.bank == "procedural" else Path(args.bank)
    summary = build_benchmark(Path(args.out), episodes=args.episodes, seed=args.seed, bank=bank,
                              size=args.size, fps=args.fps, sample_rate=args.sample_rate,
                              episode_seconds=tuple(args.episode_seconds), clip_seconds=args.clip_seconds,
                              layout=args.layout)
    print(summary)


def _cmd_soundbank(args: argparse.Namespace) -> None:
    from .benchmark.soundbank import build_soundbank

    print(build_soundbank(Path(args.out), include_large=args.include_large))


def _cmd_ambient_swaps(args: argparse.Namespace) -> None:
    from .benchmark.remix import ambient_swaps

    summary = ambient_swaps(Path(args.bench), Path(args.out), args.partners, args.split, progress=not args.quiet)
    print(f"{len(summary['swaps'])} ambient swaps in {args.out}; next: "
          f"action2sound data manifest folder {args.out} --hop 1 --out CLIPS.tsv")


def _cmd_manifest(args: argparse.Namespace) -> None:
    from .data import readers

    if args.source == "ego4d":
        if not args.root:
            raise Action2SoundError("ego4d needs --root: the folder that holds the clip files")
        table, report = readers.read_ego4d_sounds(Path(args.input), Path(args.root), split=args.split)
    elif args.source == "epic":
        if not args.root:
            raise Action2SoundError("epic needs --root: the folder that holds the long videos")
        table, report = readers.read_epic_kitchens(Path(args.input), Path(args.root), duration=args.duration,
                                                   split=args.split)
    else:
        table, report = readers.mine_folder(Path(args.input), duration=args.duration, hop=args.hop, mode=args.mode)
    table.save(Path(args.out))
    print(report.summary())
    print(f"wrote {len(table)} clips to {args.out}")


def _cmd_sheet(args: argparse.Namespace) -> None:
    from .benchmark.contact_sheet import contact_sheet

    out = Path(args.out) if args.out else Path(args.clip).with_suffix(".png")
    contact_sheet(Path(args.clip), out, profile=args.profile)
    print(out)


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    print(run_demo(Path(args.out)))


def _show_progress_logs() -> None:
    # Conversion and export say what they decide (EMA, placeholders, vocoder) through logging.
    import logging

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="action2sound: %(message)s")


def _cmd_convert(args: argparse.Namespace) -> None:
    from .convert import convert

    _show_progress_logs()
    out = convert(ldm_ckpt=args.ldm_ckpt, av=args.av, out=Path(args.out), sd=args.sd, vocoder=args.vocoder,
                  vocoder_config=args.vocoder_config, video_null=args.video_null, use_ema=not args.no_ema,
                  seed=args.seed, preset=args.preset)
    print(out)


def _cmd_export(args: argparse.Namespace) -> None:
    _show_progress_logs()
    if args.format == "original":
        from .convert import export_original

        for path in export_original(Path(args.source), Path(args.out)):
            if path is not None:
                print(path)
    else:
        from .weights import export

        print(export(Path(args.source), Path(args.out), fp16=not args.fp32))


def _add_convert_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="the paper's released checkpoint (or Stable Diffusion v1) -> a model directory")
    p.add_argument("--ldm-ckpt", help="the release's Lightning checkpoint (epoch=000007.ckpt)")
    p.add_argument("--av", help="the release's audio-visual model (av.pth): video backbone and retrieval towers")
    p.add_argument("--sd", help="instead of --ldm-ckpt: a Stable Diffusion v1.x checkpoint to start a fresh model "
                                "from (UNet + VAE)")
    p.add_argument("--vocoder", help="a HiFi-GAN for the paper profile: our vocoder .safetensors "
                                     "(`train vocoder`) or an official HiFi-GAN generator checkpoint")
    p.add_argument("--vocoder-config", help="config.json of an official HiFi-GAN generator given with --vocoder")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--video-null", choices=["training", "zeros"], default="training",
                   help="null video tokens: those the release trained with (default) or its sampler's zeros")
    p.add_argument("--no-ema", action="store_true", help="use raw weights even when the checkpoint has EMA ones")
    p.add_argument("--seed", type=int, default=0, help="--sd: seed of the fresh condition-token weights")
    p.add_argument("--preset", default="paper", help="architecture to map into (the release is 'paper')")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("export", help="write a model directory (from a training run), or a model directory in "
                                      "the paper release's checkpoint layout (--format original)")
    p.add_argument("source", help="a training run folder (default format) or a model directory (original)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=["modeldir", "original"], default="modeldir",
                   help="modeldir: our model directory (default); original: ldm.ckpt + av.pth as the release")
    p.add_argument("--fp32", action="store_true", help="modeldir: keep float32 weights (default float16)")
    p.set_defaults(func=_cmd_export)


def _cmd_train(args: argparse.Namespace) -> None:
    from .training import train

    result = train(args.stage, preset=args.preset, data=args.data, out=Path(args.out), resume=args.resume,
                   overrides=args.set or [], devices=args.devices, nodes=args.nodes, max_steps=args.max_steps,
                   seed=args.seed, workers=args.workers, init=args.init, checkpoint_every=args.checkpoint_every,
                   sample_every=args.sample_every, progress=not args.quiet, cache_mb=args.cache_mb)
    if result.rank != 0:
        return  # DDP: the other processes trained the same model; rank 0 reports it
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.metrics.items()))
    print(f"{result.stage}: {result.steps} steps in {result.seconds:.1f} s; {metrics}")
    print(result.weights)


def _cmd_distil_vocoder(args: argparse.Namespace) -> None:
    from .training.distil import distil

    print(distil([Path(f) for f in args.sounds], Path(args.out), steps=args.steps, batch_size=args.batch_size,
                 exclude=set(args.exclude), seed=args.seed, lr=args.lr,
                 vae_dir=Path(args.vae) if args.vae else None, init=Path(args.init) if args.init else None,
                 adversarial=args.adversarial))


def _cmd_preencode(args: argparse.Namespace) -> None:
    import dataclasses
    import os

    import torch

    from .data.store import ClipEncoder, preencode
    from .data.splits import load_clip_table
    from .weights import load_encoders, load_sync_encoder

    if args.device:
        device = args.device
    elif torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', os.environ.get('SLURM_LOCALID', 0)))}"
    else:
        device = "cpu"
    table = load_clip_table(args.data)
    av, vae, preset, source = load_encoders(Path(args.model), device)
    sync_encoder, sync_sha = load_sync_encoder(Path(args.model), device, appearance_size=args.appearance)
    if sync_encoder is not None:
        source["sync_encoder"] = sync_sha
        preset = dataclasses.replace(preset, sync_stream=sync_encoder.cfg)  # the stream as encoded
    elif args.appearance is not None:
        raise Action2SoundError(f"{args.model}: --appearance adds to the sync stream's features, and this model has "
                                "no sync encoder; drop --appearance or pass a run or model with one")
    encoder = ClipEncoder(av, vae, preset, device, source, sync_encoder=sync_encoder)
    report = preencode(table, encoder, Path(args.out), shard_size=args.shard_size, batch_size=args.batch_size,
                       workers=args.workers, rank=args.rank, world=args.world, progress=not args.quiet)
    print(report.summary())


def _cmd_bench(args: argparse.Namespace) -> None:
    from .training.bench import bench_ldm, format_report

    report = bench_ldm(args.preset, device=args.device, train_batch=args.train_batch, train_steps=args.train_steps,
                       sample_batches=tuple(args.sample_batches), sample_steps=args.sample_steps,
                       compile=args.compile)
    print(format_report(report))


# options.VOCODERS (not imported: options pulls in the media stack, and the CLI starts without it)
_VOCODERS = ["auto", "model", "bridge", "fast", "griffinlim"]


def _add_training_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one stage (av, vae, vocoder, ldm) into a run folder")
    p.add_argument("stage", choices=["av", "vae", "vocoder", "ldm", "sync", "sync_encoder"],
                   help="sync: the AV-Sync classifier of `evaluate` (uses the preset's train.av settings); "
                        "sync_encoder: the sync stream's encoder (exported with the model, used by preencode)")
    p.add_argument("--preset", default="tiny", help="tiny (CPU, seconds), small, or paper (default tiny)")
    p.add_argument("--data", help="av/vae/vocoder/sync/sync_encoder: a clip table, an Ego4D-Sounds TSV or a benchmark folder; "
                                  "ldm: a store folder (`preencode`)")
    p.add_argument("--out", required=True, help="run folder; the stage writes RUN/<stage>/")
    p.add_argument("--resume", action="store_true", help="continue RUN/<stage> from its last checkpoint")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a preset field, e.g. train.ldm.lr=3e-4 or diffusion.p_drop_audio=0.2 "
                        "(repeatable)")
    p.add_argument("--devices", type=int, help="GPUs per node (DDP when more than one in all; default 1)")
    p.add_argument("--nodes", type=int, default=1, help="nodes (with torchrun or SLURM; see docs/TRAINING.md)")
    p.add_argument("--max-steps", type=int, help="training batches in total (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, data order and noise")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes (default 0: in process)")
    p.add_argument("--init", help="start from this weights file (strict), e.g. a converted SD v1 VAE; for the "
                                  "vocoder, `universal` starts from the shipped universal HiFi-GAN (any profile)")
    p.add_argument("--checkpoint-every", type=int, help="batches between checkpoints (default: the preset's)")
    p.add_argument("--sample-every", type=int, help="ldm: batches between sample spectrograms (PNG)")
    p.add_argument("--cache-mb", type=int, default=512,
                   help="decoded clips kept in memory per data process (default 512; 0: decode every time)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("distil-vocoder", help="distil the universal HiFi-GAN into the light fast vocoder "
                                              "(`--vocoder fast`) on recordings of your own (resumable)")
    p.add_argument("--sounds", required=True, nargs="+", help="folders of recordings (flac / wav / ogg / mp3)")
    p.add_argument("--out", required=True, help="run folder; rerun the same command to continue a killed run")
    p.add_argument("--steps", type=int, default=6000, help="training steps in all (default 6000)")
    p.add_argument("--batch-size", type=int, default=16, help="crops per step (default 16)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="NAME",
                   help="file names to leave out (e.g. the recordings you evaluate on)")
    p.add_argument("--vae", help="a universal22k model directory (e.g. the default model's): also distil on each "
                                 "window's mel after its VAE, the smoothed mels generation gives the vocoder")
    p.add_argument("--init", help="start from these fast vocoder weights (fine-tune) instead of random ones")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    p.add_argument("--adversarial", type=float, default=0.0, metavar="W",
                   help="add a multi-resolution spectrogram discriminator, its terms weighted W (e.g. 0.1 for a "
                        "fine-tune with --init; default 0: distillation losses only; ~3x the time per step)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_distil_vocoder)

    p = sub.add_parser("preencode", help="run the frozen AV model and VAE once per clip into a store (resumable)")
    p.add_argument("--data", required=True, help="a clip table, an Ego4D-Sounds TSV or a benchmark folder")
    p.add_argument("--model", required=True, help="a run folder with av/ and vae/, or a model directory")
    p.add_argument("--out", required=True, help="store folder; rerun the same command to finish a killed run")
    p.add_argument("--workers", type=int, default=0, help="decoding processes (default 0: in process)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per network call (default 16)")
    p.add_argument("--shard-size", type=int, default=256, help="clips per shard (default 256)")
    p.add_argument("--rank", type=int, help="this process's share: shards s with s %% world == rank "
                                            "(default: RANK / SLURM_PROCID, else 0)")
    p.add_argument("--world", type=int, help="number of processes sharing the work (default: WORLD_SIZE / "
                                             "SLURM_NTASKS, else 1)")
    p.add_argument("--device", help="torch device (default: cuda:LOCAL_RANK when there is a GPU, else cpu)")
    p.add_argument("--appearance", type=int, metavar="PX",
                   help="the sync stream's appearance: per column, a crop where the picture moves, from frames of "
                        "PX pixels (0: none; default: the sync encoder's setting, sync_stream.appearance_size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_preencode)

    p = sub.add_parser("bench", help="ldm speed and memory: training samples/s, sampling ms per clip")
    p.add_argument("--preset", default="tiny", help="tiny, small or paper (default tiny)")
    p.add_argument("--device", help="torch device (default: cuda when there is one, else cpu)")
    p.add_argument("--train-batch", type=int, help="training batch (default: the preset's, at most 90)")
    p.add_argument("--train-steps", type=int, default=10, help="timed training steps (default 10)")
    p.add_argument("--sample-batches", type=int, nargs="+", default=[1, 50], help="sampling batches (default 1 50)")
    p.add_argument("--sample-steps", type=int, default=25, help="sampler steps (default 25)")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    p.set_defaults(func=_cmd_bench)


def _check_counts(args: argparse.Namespace, *names: str) -> None:
    """Whole-number options that must be at least 1 (when given), checked before any work."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise Action2SoundError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        # On a busy machine fewer threads than cores can be several times faster (no spin-waiting).
        torch.set_num_threads(threads)


def _one_line_warnings() -> None:
    # A fallback (e.g. Griffin-Lim) or a short ambient file says so on one line, not with a source excerpt.
    import warnings

    warnings.showwarning = lambda msg, *a, **k: print(f"action2sound: warning: {msg}", file=sys.stderr)


def _cmd_generate(args: argparse.Namespace) -> None:
    import warnings

    from .api import Action2Sound, generate_files, make_options, plan_outputs

    _check_counts(args, "threads")
    options = {k: v for k, v in dict(
        ambient=args.ambient, ambient_offset=args.ambient_offset, seed=args.seed, steps=args.steps,
        sampler=args.sampler, video_guidance=args.video_guidance, audio_guidance=args.audio_guidance,
        sync_guidance=args.sync_guidance, overlap=args.overlap, batch_size=args.batch_size,
        precision=args.precision).items() if v is not None}
    # Everything that needs no model is checked before loading one: the numbers, the output folder and names.
    opts = make_options(**options)
    plan_outputs(args.inputs, args.out, format=args.format, container=args.container, ambient=opts.ambient)
    _set_threads(args.threads)
    with warnings.catch_warnings():
        _one_line_warnings()
        model = Action2Sound.from_pretrained(args.model, device=args.device, index=args.index,
                                             vocoder=args.vocoder)
        report = generate_files(
            model, args.inputs, args.out, format=args.format, keep_original_audio=args.keep_original_audio,
            overwrite=args.overwrite, progress=not args.quiet, container=args.container,
            report_error=lambda path, msg: print(f"action2sound: failed: {msg}", file=sys.stderr), **options)
    print(report.summary())
    print(Path(args.out))
    if report.failed:
        raise Action2SoundError(f"{len(report.failed)} of {len(report.failed) + len(report.done)} inputs failed "
                                "(listed above); the others were written")


def _cmd_index_build(args: argparse.Namespace) -> None:
    from .indexing import build_index_from_store

    out = build_index_from_store(args.store, args.model, args.out, kind=args.kind, nlist=args.nlist)
    print(out)


def _add_generate_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate the sound of videos (files or folders) into --out")
    p.add_argument("inputs", nargs="+", help="video files (any container, codec, frame rate, orientation) or "
                                             "folders of them")
    p.add_argument("--model", help="model directory (`action2sound export`; default: the packaged default model)")
    p.add_argument("--out", required=True, help="output folder: NAME.wav, NAME.mp4, NAME.png, NAME.json")
    p.add_argument("--index", help="retrieval index folder (`action2sound index build`; default MODEL/index)")
    p.add_argument("--vocoder", default="auto", choices=_VOCODERS,
                   help="auto (default): the model's vocoder, else for a paper-profile model the bridge to the "
                        "universal HiFi-GAN (mel_bridge), else Griffin-Lim; model: the model's own; bridge; "
                        "fast: the shipped light vocoder distilled from the universal HiFi-GAN (~70x faster on "
                        "a CPU; preview quality, see the README); griffinlim")
    p.add_argument("--ambient", default="retrieved",
                   help="retrieved (default: the audio of the visually matching training clip), quiet (a "
                        "low-ambient clip: the action alone), random (a random clip of another video: the paper's "
                        "ablation), none (the learned null), or an audio/video FILE whose ambient to follow")
    p.add_argument("--ambient-offset", type=float, help="seconds into the --ambient FILE (default 0)")
    p.add_argument("--video-guidance", type=float, help="guidance weight of the video (default: the model's "
                                                        "guidance scale)")
    p.add_argument("--audio-guidance", type=float, help="guidance weight of the audio condition, the ambient dial "
                                                        "(default: the model's; 1 keeps the condition without amplifying it)")
    p.add_argument("--sync-guidance", type=float, help="guidance weight of the sync stream, the timing dial "
                                                       "(default: the model's; a model without the stream ignores it)")
    p.add_argument("--seed", type=int, help="noise seed (default 0); the same seed gives the same audio")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--sampler", choices=["dpm", "ddim", "release-dpm", "release-ddim"],
                   help="DPM-Solver++ 2M or DDIM, or the paper release's own versions of them (default: the "
                        "model's; release-dpm for a model converted from the release)")
    p.add_argument("--overlap", type=float, help="seconds consecutive windows of long videos share (default 0.5)")
    p.add_argument("--batch-size", type=int, help="windows (and videos) per network call (default 8)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="auto (default): fp32, but on a CPU with AMX the vocoder's middle stages in bf16 (2.5x "
                        "faster vocoder, output within the measured bf16 rounding); fp32: every network in fp32; "
                        "bf16: bf16 autocast for the video tower, UNet and vocoder (faster still, changes the sound)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--format", default="wav", choices=["wav", "flac"], help="audio file format (default wav)")
    p.add_argument("--keep-original-audio", default="replace", choices=["replace", "mix", "add"],
                   help="the mp4's original sound: replace (default), mix into the new track, or add as a "
                        "second track")
    p.add_argument("--container", default="mp4", choices=["mp4", "mkv"],
                   help="the video with the new sound: mp4 (default) or mkv; the picture is copied when the "
                        "container takes its codec, else re-encoded to H.264 with the same frame timing")
    p.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs exist (default: skip those "
                                                            "done with the same settings)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)

    index = sub.add_parser("index", help="the retrieval index of training clips")
    isub = index.add_subparsers(dest="index_command", required=True)
    p = isub.add_parser("build", help="index a pre-encoded store's clips for a model (faiss)")
    p.add_argument("--store", required=True, help="store folder (`action2sound preencode`)")
    p.add_argument("--model", required=True, help="the model directory the index serves")
    p.add_argument("--out", required=True, help="index folder to write")
    p.add_argument("--kind", default="exact", choices=["exact", "ivf", "hnsw"],
                   help="exact search (default), or approximate for millions of clips")
    p.add_argument("--nlist", type=int, help="ivf: number of cells (default ~4 sqrt(N))")
    p.set_defaults(func=_cmd_index_build)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import warnings

    from .evaluation.runner import EvalSettings, evaluate, markdown_table

    _check_counts(args, "threads", "seeds", "limit", "steps", "batch_size")
    _set_threads(args.threads)
    weights = {"vggish": args.vggish, "panns": args.panns}.get(args.fad_embedder)
    if args.model is None:
        from .weights import default_model_dir

        args.model = str(default_model_dir())
    settings = EvalSettings(
        model=args.model, data=args.data, out=args.out, ambient=args.ambient, baseline=args.baseline,
        vocoder=args.vocoder, seeds=args.seeds, limit=args.limit, split=args.split, steps=args.steps,
        video_guidance=args.video_guidance, audio_guidance=args.audio_guidance, sync_guidance=args.sync_guidance,
        index=args.index, sync=args.sync, desync=args.desync, shift_test=args.shift_test, fad_embedder=args.fad_embedder, fad_weights=weights, device=args.device,
        batch_size=args.batch_size, label=args.label, progress=not args.quiet)
    with warnings.catch_warnings():
        _one_line_warnings()
        report = evaluate(settings)
    print(f"evaluated {report.summary['clips']} clips x {len(report.summary['seeds'])} seeds: {report.done} new "
          f"outputs, {report.skipped} already done, {report.failed} failed")
    print(markdown_table([report.summary]), end="")
    print(report.out)


def _cmd_compare(args: argparse.Namespace) -> None:
    from .evaluation.compare import compare_runs, markdown, write_comparison

    result = compare_runs(args.runs, boot=args.boot, labels=args.label)
    print(markdown(result), end="")
    if args.out:
        print(write_comparison(Path(args.out), result))


def _cmd_serve(args: argparse.Namespace) -> None:
    from .serve import ServeSettings, serve

    serve(ServeSettings(model=args.model, index=args.index, host=args.host, port=args.port, device=args.device,
                        max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds))


def _add_serve_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="the web UI: upload a video, choose the ambient, watch and download the result")
    p.add_argument("--model", help="model directory (default: the packaged default model)")
    p.add_argument("--index", help="retrieval index folder (default MODEL/index)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload accepted (default 200 MB)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="longest video accepted (default 120 s)")
    p.set_defaults(func=_cmd_serve)


def _add_evaluation_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="generate for a test set and measure it (FAD, AV-Sync, benchmark metrics); "
                                        "resumable")
    p.add_argument("--model", help="model directory (`action2sound export`; default: the packaged default model)")
    p.add_argument("--data", required=True, help="a benchmark folder, a store folder, a clip table or an "
                                                 "Ego4D-Sounds TSV")
    p.add_argument("--out", required=True, help="report folder: records.jsonl, summary.json, results.md, plots; "
                                                "rerun the same command to resume")
    p.add_argument("--ambient", default="retrieved",
                   help="retrieved (default), quiet, none, random (a random clip of another video: the paper's "
                        "ablation) or an audio/video FILE")
    p.add_argument("--baseline", default="none", choices=["none", "retrieval", "groundtruth", "codec"],
                   help="none: the model (default); retrieval: the retrieved clip's audio as the output; "
                        "groundtruth: the clip's own audio; codec: the clip's own audio through the model's VAE "
                        "and vocoder (the ceiling of every metric for this model)")
    p.add_argument("--vocoder", default="auto", choices=_VOCODERS,
                   help="auto: the model's vocoder, else the bridge to the universal HiFi-GAN for a paper-profile "
                        "model (default); model: the model's own; bridge; fast: the light distilled vocoder; "
                        "griffinlim: the paper's Griffin-Lim ablation")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..K-1 per clip (default 1)")
    p.add_argument("--limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--split", default="test", choices=["test", "val", "train", "all"],
                   help="which clips (default test; a table without that split is used whole)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the model's)")
    p.add_argument("--video-guidance", type=float, help="guidance weight of the video (default: the model's)")
    p.add_argument("--audio-guidance", type=float, help="guidance weight of the audio condition (default: the model's)")
    p.add_argument("--sync-guidance", type=float, help="guidance weight of the sync stream (default: the model's)")
    p.add_argument("--index", help="retrieval index folder (default MODEL/index)")
    p.add_argument("--shift-test", action="store_true",
                   help="also delay each clip's video by -0.5, -0.3, +0.3, +0.5 s and report the share of generated "
                        "onsets that move with it (benchmark folders only; 4 more outputs per clip)")
    p.add_argument("--desync", help="a model directory (or training run) whose sync encoder measures the "
                                    "DeSync-like offset of every output (default: the evaluated model's own)")
    p.add_argument("--sync", help="AV-Sync classifier weights (`train sync`: RUN/sync/weights.safetensors); "
                                  "without it AV-Sync is not measured")
    p.add_argument("--fad-embedder", default="aisfx", choices=["aisfx", "av", "vggish", "panns", "none"],
                   help="aisfx (default; pip install --no-deps aisfx==0.1.2), av (the model's audio tower), "
                        "vggish / panns (with --vggish / --panns), none")
    p.add_argument("--vggish", help="a VGGish state dict file (torchvggish keys) for --fad-embedder vggish")
    p.add_argument("--panns", help="a PANNs Cnn14 checkpoint file for --fad-embedder panns")
    p.add_argument("--label", help="the run's name in the results table (default: from the settings)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per generation call (default 8)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("compare", help="is a run better than another? paired bootstrap over the clips of `evaluate` "
                                       "folders: differences with 95 %% intervals, a table and a picture")
    p.add_argument("runs", nargs="+", metavar="EVAL_DIR",
                   help="`evaluate` --out folders on the same clips and seeds; the first is the baseline")
    p.add_argument("--out", help="folder for compare.md, compare.json and compare.png (default: print only)")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--label", action="append", help="a run's name in the tables, once per run in order "
                                                    "(default: the folders' names)")
    p.set_defaults(func=_cmd_compare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="action2sound",
        description="Generate the sounds of the actions in a video, with the ambient under your control.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="datasets: the ambient-aware benchmark, manifests, sound banks")
    dsub = data.add_subparsers(dest="data_command", required=True)

    p = dsub.add_parser("benchmark", help="build the ambient-aware benchmark (episodes, clips, stems, events)")
    p.add_argument("out", help="output folder")
    p.add_argument("--episodes", type=int, default=4, help="number of long episodes (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same data")
    p.add_argument("--bank", default="procedural",
                   help="'procedural' (synthesised, default) or a folder with events/<kind>/ and ambient/")
    p.add_argument("--size", type=int, default=224, help="frame size in pixels (square)")
    p.add_argument("--fps", type=float, default=15.0, help="video frame rate (default 15)")
    p.add_argument("--sample-rate", type=int, default=22050, help="audio sample rate (default 22050)")
    p.add_argument("--episode-seconds", type=float, nargs=2, default=(40.0, 90.0), metavar=("MIN", "MAX"),
                   help="episode length range in seconds (default 40 90)")
    p.add_argument("--clip-seconds", type=float, default=3.0, help="clip length in seconds (default 3)")
    p.add_argument("--layout", choices=["v2", "centred"], default="v2",
                   help="where clips are cut: v2 (default) puts contacts anywhere in the clip, 0, 1 or several; "
                        "centred is benchmark v1 (every clip centred on a contact), to reproduce old results")
    p.set_defaults(func=_cmd_benchmark)

    p = dsub.add_parser("soundbank", help="build a bank of real recordings from Debian packages (needs apt-get)")
    p.add_argument("out", help="output folder (events/<kind>/, ambient/, LICENSES.md)")
    p.add_argument("--include-large", action="store_true", help="also fetch 0ad-data (a 1.3 GB package)")
    p.set_defaults(func=_cmd_soundbank)

    p = dsub.add_parser("ambient-swaps", help="training episodes with another episode's ambient, so that only the "
                                              "audio condition tells the ambient (benchmark/remix.py)")
    p.add_argument("bench", help="a benchmark folder (action2sound data benchmark)")
    p.add_argument("--out", required=True, help="folder for <uid>~<partner>.mp4 and swaps.json (rerun to finish)")
    p.add_argument("--partners", type=int, default=2, help="other episodes' ambients per episode (default 2)")
    p.add_argument("--split", default="train", help="the episodes that take part (default train; test stays out)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_ambient_swaps)

    p = dsub.add_parser("manifest", help="write the normalised clip table from a dataset")
    p.add_argument("source", choices=["ego4d", "epic", "folder"])
    p.add_argument("input", help="ego4d: metadata TSV; epic: annotation CSV; folder: a folder of long videos")
    p.add_argument("--root", help="ego4d: clip folder; epic: long-video folder")
    p.add_argument("--out", required=True, help="clip table to write (.tsv)")
    p.add_argument("--split", help="give every clip this split (e.g. test) instead of a 5%% validation draw")
    p.add_argument("--duration", type=float, default=3.0, help="clip length in seconds (epic, folder)")
    p.add_argument("--mode", choices=["windows", "onsets"], default="windows",
                   help="folder: sliding windows, or windows centred on audio onsets")
    p.add_argument("--hop", type=float, help="folder, windows mode: seconds between window starts (default: "
                                             "--duration, windows that do not overlap)")
    p.set_defaults(func=_cmd_manifest)

    p = dsub.add_parser("sheet", help="contact sheet of a clip: frames over waveform and spectrogram (PNG)")
    p.add_argument("clip", help="a video clip with audio")
    p.add_argument("--out", help="PNG to write (default: next to the clip)")
    p.add_argument("--profile", default="universal22k", help="audio profile for the spectrogram")
    p.set_defaults(func=_cmd_sheet)

    p = sub.add_parser("demo", help="the embedded default end to end; writes a page and prints its path")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.set_defaults(func=_cmd_demo)

    _add_convert_commands(sub)
    _add_training_commands(sub)
    _add_generate_commands(sub)
    _add_evaluation_commands(sub)
    _add_serve_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except Action2SoundError as err:
        print(f"action2sound: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("action2sound: interrupted; finished outputs are kept, run again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
