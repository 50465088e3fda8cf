#!/usr/bin/env python3
"""known.py CATALOG-DIR: the association's worker (a worker stage).

Started once per slice, before the first visit, it loads its slice's
catalogue of known objects (CATALOG-DIR/sliceN.csv, N from DPSBATCH_SLICE)
and keeps it for the whole run. For each data ID it reads one JSON line on
stdin (the worker protocol: harness/stage_worker.go) and answers one JSON
line on stdout: {"outputs": {"nknown": K, "worker": PID}}, K the known
objects within RADIUS degrees of the field (the inputs ra and dec, which
the predictions event put on the clipboard) and PID this process's (one
per slice for the run), or {"error": "..."}. Standard library only;
the same loop in any language is a worker.
"""
import csv
import json
import math
import os
import sys

RADIUS = 0.5


def load(folder):
    path = os.path.join(folder, "slice%s.csv" % os.environ["DPSBATCH_SLICE"])
    with open(path, newline="") as f:
        return [(row["id"], float(row["ra"]), float(row["dec"])) for row in csv.DictReader(f)]


def known(catalog, ra, dec):
    return sum(1 for _, r, d in catalog if math.hypot(r - ra, d - dec) <= RADIUS)


def main():
    catalog = load(sys.argv[1])
    print("known.py: loaded %d known objects, once for the run" % len(catalog), file=sys.stderr, flush=True)
    for line in sys.stdin:
        try:
            inputs = json.loads(line)["inputs"]
            n = known(catalog, float(inputs["ra"]), float(inputs["dec"]))
            answer = {"outputs": {"nknown": n, "worker": os.getpid()}}
        except (ValueError, KeyError, TypeError) as e:
            answer = {"error": "known.py: %s: %s" % (type(e).__name__, e)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
