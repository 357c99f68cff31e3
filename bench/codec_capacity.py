"""How much of a clip can a video latent of a given size keep at best? A linear bound (issue 16)

A video codec with spatial stride S, temporal stride 4 and C latent channels keeps C numbers for every
S x S x 4-frame block of 3 colours (3 * S * S * 4 numbers). This bench fits the best linear codec of
that size, principal components of such blocks, on training videos and prints the PSNR it keeps on
held-out ones, conformed to the layout as `reconstruct` conforms them (centre crop, area resize,
fps). A trained nonlinear codec can beat it, but not by much so far: the shipped general codec
(stride 8, 16 channels) is 0.1 to 5.2 dB above it on 6 of the 9 held-out clips and up to 1.4 dB
under it on the other 3 (docs/GENERAL_CODECS.md). So it tells which clips a codec of a given latent
size will hardly keep at 25 dB, and what more latent would buy.

    python bench/codec_capacity.py --train DIR/train/video --heldout DIR/heldout/video
    python bench/codec_capacity.py --train T --heldout H --sizes 8x16,8x32,4x16 --seconds 10 --json out.json

DIR is `scripts/fetch_general_media.py --output DIR`. About 4 minutes on 2 cores with the defaults.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def blocks(frames: torch.Tensor, stride: int, group: int = 4) -> torch.Tensor:
    """(T, H, W, 3) frames -> (blocks, group * 3 * stride**2): every stride x stride x group-frame block
    (frames past the last whole group dropped)."""
    t, h, w, c = frames.shape
    if h % stride or w % stride:
        raise ValueError(f"frames of {w}x{h} do not divide into {stride} x {stride} blocks")
    t = t // group * group
    x = frames[:t].float().reshape(t // group, group, h // stride, stride, w // stride, stride, c)
    return x.permute(0, 2, 4, 1, 6, 3, 5).reshape(-1, group * c * stride * stride)


def fit(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and principal directions (columns, largest variance first) of the training blocks."""
    mean = train.double().mean(0)
    centred = train.double() - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred / len(train))
    return mean, vectors.flip(1)


def bound_psnr(test: torch.Tensor, mean: torch.Tensor, directions: torch.Tensor, keep: int) -> float:
    """PSNR (dB, values in 0..1) of `test` blocks kept through their first `keep` principal components."""
    from avdit.codecs.base import video_psnr

    basis = directions[:, :keep]
    return video_psnr(test, ((test.double() - mean) @ basis @ basis.T + mean).clamp(0, 1))


def _videos(folder: str) -> list[Path]:
    from avdit.data import VIDEO_EXTENSIONS

    found = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not found:
        raise SystemExit(f"bench/codec_capacity.py: no video ({', '.join(VIDEO_EXTENSIONS)}) in {folder!r}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", required=True, help="folder of videos to fit the linear codecs on")
    parser.add_argument("--heldout", required=True, help="folder of videos to score")
    parser.add_argument("--sizes", default="8x16,8x32,8x48,4x16",
                        help="latent sizes, STRIDExCHANNELS, comma-separated (default %(default)s; the shipped general codec is 8x16)")
    parser.add_argument("--size", type=int, default=128, help="square frame size (default %(default)s)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of each held-out video (default %(default)s)")
    parser.add_argument("--train-seconds", type=float, default=30.0, help="seconds of each training video (default %(default)s)")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args(argv)
    sizes = []
    for item in args.sizes.split(","):
        try:
            stride, channels = (int(v) for v in item.lower().split("x"))
        except ValueError:
            parser.error(f"--sizes: {item!r} is not STRIDExCHANNELS (e.g. 8x16)")
        if stride < 1 or args.size % stride or not 1 <= channels <= 12 * stride * stride:
            parser.error(f"--sizes: {item!r}: the stride must divide --size {args.size} and the channels lie in 1..12*stride^2")
        sizes.append((stride, channels))

    from avdit.media import conform_video, decode

    def load(path: Path, seconds: float) -> torch.Tensor:
        media = decode(str(path), duration=seconds, audio=False)
        return conform_video(media.frames, media.fps, args.fps, (args.size, args.size), mode="crop")

    train = [load(p, args.train_seconds) for p in _videos(args.train)]
    heldout = {p.name: load(p, args.seconds) for p in _videos(args.heldout)}
    table = {}
    for stride in sorted({s for s, _ in sizes}, reverse=True):  # one fit and one cut of the held-out clips per stride
        mean, directions = fit(torch.cat([blocks(f, stride) for f in train]))
        tests = {name: blocks(f, stride) for name, f in heldout.items()}
        for channels in [c for s, c in sizes if s == stride]:
            ratio = 3 * stride * stride * 4 / channels
            row = {name: round(bound_psnr(b, mean, directions, channels), 2) for name, b in tests.items()}
            table[f"{stride}x{channels}"] = row
            mean_psnr = sum(row.values()) / len(row)
            print(f"stride {stride}, {channels} channels (1/{ratio:.0f} of the values): mean {mean_psnr:.2f} dB, "
                  f"{sum(v >= 25 for v in row.values())} of {len(row)} at 25 dB or more", flush=True)
            for name, value in row.items():
                print(f"    {value:6.2f} dB  {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
