#!/usr/bin/env python3
"""Keeps a fuzz corpus small: from a libFuzzer merge control file, copies at
most N inputs that together cover the most coverage features (greedy set
cover) into OUT.

Usage: trim-corpus.py CONTROL_FILE OUT N   (see README.md)
"""
import sys, shutil, os
cf, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(cf).read().split('\n')
nfiles = int(lines[0]); files = lines[2:2+nfiles]
cov = {}
for line in lines[2+nfiles:]:
    p = line.split()
    if len(p) >= 2 and p[0] == 'COV':
        cov[int(p[1])] = set(map(int, p[2:]))
covered, chosen = set(), []
while len(chosen) < n:
    best = max(cov, key=lambda i: len(cov[i] - covered), default=None)
    if best is None or not (cov[best] - covered): break
    chosen.append(best); covered |= cov.pop(best)
allcov = set().union(*cov.values(), covered) if cov else covered
os.makedirs(out, exist_ok=True)
for i in chosen: shutil.copy(files[i], out)
print(f"chose {len(chosen)} files covering {len(covered)} of {len(allcov)} edges")
