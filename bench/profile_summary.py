"""Summarise a py-spy raw (collapsed-stack) profile: where the samples are, by function.

    py-spy record --format raw --output prof.txt --pid PID [--idle]
    python bench/profile_summary.py prof.txt [--match edgefleet] [--top 25]

``--py-spy FILE.txt`` of control_plane.py writes such a file for the server. Prints, per
function, the share of samples in which it is on the stack (inclusive) and at the top
(self), plus the same for the frames whose file matches ``--match``; with ``--thread`` only
the samples of threads whose name contains it.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def parse(path: Path, thread: str | None) -> tuple[list[tuple[list[str], int]], int]:
    stacks: list[tuple[list[str], int]] = []
    total = 0
    for raw in path.read_text(errors="replace").splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if thread and thread not in frames[0]:
            continue
        n = int(count)
        total += n
        stacks.append((frames[1:] if frames[0].startswith(("thread", "process")) else frames, n))
    return stacks, total


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    return f"{m['func']} ({m['file']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--match", default="edgefleet", help="frames of interest (file path)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", help="only threads whose label contains this")
    args = parser.parse_args()
    stacks, total = parse(args.profile, args.thread)
    if not total:
        raise SystemExit("no samples")
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for frames, n in stacks:
        names = [short(f) for f in frames]
        for name in set(names):
            inclusive[name] += n
        leaf[names[-1]] += n
        mine = [nm for f, nm in zip(frames, names, strict=True) if args.match in f]
        if mine:
            own[mine[-1]] += n
    print(f"{total} samples in {args.profile}")

    def table(title: str, counter: Counter[str]) -> None:
        print(f"\n{title}")
        for name, n in counter.most_common(args.top):
            print(f"{100 * n / total:6.1f}%  {name}")

    table("self (top of stack)", leaf)
    table(f"innermost '{args.match}' frame on the stack", own)
    table("inclusive (on the stack)", inclusive)


if __name__ == "__main__":
    main()
