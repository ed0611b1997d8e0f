"""The `action2sound` command line: thin wrappers that parse arguments and call the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import Action2SoundError


def _cmd_benchmark(args: argparse.Namespace) -> None:
    from .data.benchmark import build_benchmark

    bank = args.bank if args.bank == "procedural" else Path(args.bank)
    summary = build_benchmark(Path(args.out), episodes=args.episodes, seed=args.seed, bank=bank,
                              size=args.size)
    print(summary)


def _cmd_soundbank(args: argparse.Namespace) -> None:
    from .data.soundbank import build_soundbank

    print(build_soundbank(Path(args.out), include_large=args.include_large))


def _cmd_manifest(args: argparse.Namespace) -> None:
    from .data import manifest

    if args.source == "ego4d":
        if not args.root:
            raise Action2SoundError("ego4d needs --root: the folder that holds the clip files")
        table, report = manifest.read_ego4d_sounds(Path(args.input), Path(args.root), split=args.split)
    elif args.source == "epic":
        if not args.root:
            raise Action2SoundError("epic needs --root: the folder that holds the long videos")
        table, report = manifest.read_epic_kitchens(Path(args.input), Path(args.root), duration=args.duration,
                                                    split=args.split)
    else:
        table, report = manifest.mine_folder(Path(args.input), duration=args.duration, mode=args.mode)
    table.save(Path(args.out))
    print(report.summary())
    print(f"wrote {len(table)} clips to {args.out}")


def _cmd_sheet(args: argparse.Namespace) -> None:
    from .data.contact_sheet import contact_sheet

    out = Path(args.out) if args.out else Path(args.clip).with_suffix(".png")
    contact_sheet(Path(args.clip), out, profile=args.profile)
    print(out)


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    print(run_demo(Path(args.out)))


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
    p.set_defaults(func=_cmd_benchmark)

    p = dsub.add_parser("soundbank", help="build a bank of real recordings from Debian packages (needs apt-get)")
    p.add_argument("out", help="output folder (events/<kind>/, ambient/, LICENSES.md)")
    p.add_argument("--include-large", action="store_true", help="also fetch 0ad-data (a 1.3 GB package)")
    p.set_defaults(func=_cmd_soundbank)

    p = dsub.add_parser("manifest", help="write the normalised clip table from a dataset")
    p.add_argument("source", choices=["ego4d", "epic", "folder"])
    p.add_argument("input", help="ego4d: metadata TSV; epic: annotation CSV; folder: a folder of long videos")
    p.add_argument("--root", help="ego4d: clip folder; epic: long-video folder")
    p.add_argument("--out", required=True, help="clip table to write (.tsv)")
    p.add_argument("--split", help="give every clip this split (e.g. test) instead of a 5%% validation draw")
    p.add_argument("--duration", type=float, default=3.0, help="clip length in seconds (epic, folder)")
    p.add_argument("--mode", choices=["windows", "onsets"], default="windows",
                   help="folder: sliding windows, or windows centred on audio onsets")
    p.set_defaults(func=_cmd_manifest)

    p = dsub.add_parser("sheet", help="contact sheet of a clip: frames over waveform and spectrogram (PNG)")
    p.add_argument("clip", help="a video clip with audio")
    p.add_argument("--out", help="PNG to write (default: next to the clip)")
    p.add_argument("--profile", default="universal22k", help="audio profile for the spectrogram")
    p.set_defaults(func=_cmd_sheet)

    p = sub.add_parser("demo", help="the embedded default end to end; writes a page and prints its path")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.set_defaults(func=_cmd_demo)
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
