#!/usr/bin/env python3
"""Shrinks a corpus to at most N files that keep the most edge coverage (a greedy set cover
over the per-file coverage libFuzzer records in a merge control file). See FUZZING.md:

    target/x86_64-unknown-linux-gnu/release/<target> -merge=1 -use_counters=0 \
        -merge_control_file=/tmp/ctl /tmp/empty corpus/<target>
    python3 cover.py /tmp/ctl 300 corpus/<target>

Files of the directory that are not picked are deleted.
"""

import os
import sys


def main() -> None:
    control, budget, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(control) as f:
        lines = f.read().splitlines()
    count = int(lines[0])
    names = lines[2 : 2 + count]
    edges: dict[int, set[int]] = {}
    for line in lines[2 + count :]:
        parts = line.split()
        if parts and parts[0] == "COV":
            edges[int(parts[1])] = {int(e) for e in parts[2:]}
    covered: set[int] = set()
    picked: list[int] = []
    while len(picked) < budget:
        best = max(edges, key=lambda i: (len(edges[i] - covered), -i), default=None)
        if best is None or not edges[best] - covered:
            break
        covered |= edges.pop(best)
        picked.append(best)
    keep = {os.path.basename(names[i]) for i in picked}
    total = set().union(*edges.values(), covered) if edges else covered
    for name in os.listdir(directory):
        if name not in keep:
            os.remove(os.path.join(directory, name))
    print(f"kept {len(keep)} files covering {len(covered)} of {len(total)} edges")


if __name__ == "__main__":
    main()
