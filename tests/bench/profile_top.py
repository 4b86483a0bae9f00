"""Top frames of a ``py-spy record --format raw`` profile (collapsed stacks, one
``frame;frame;... count`` per line): by own samples (the leaf) and by inclusive samples.

``python -m tests.bench.profile_top PROFILE.txt [--top N] [--match TEXT]``
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summarise(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    total, own, inclusive = 0, Counter[str](), Counter[str]()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return total, own, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--match", default="", help="inclusive share of frames naming TEXT")
    args = parser.parse_args()
    total, own, inclusive = summarise(args.profile)
    print(f"{args.profile}: {total} samples")
    print("own (leaf) samples:")
    for frame, n in own.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {frame}")
    print("inclusive samples:")
    shown = [(f, n) for f, n in inclusive.most_common() if args.match in f][:args.top]
    for frame, n in shown:
        print(f"  {100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
