"""Run a plain Python function as a dpsbatch worker stage.

A worker stage starts one program per slice, before the first visit, and
keeps it for the run; for each data ID it sends one JSON line on the
program's stdin and reads one JSON line back (README.md, "Writing a stage
in Python (worker stage)", gives the protocol). This module is that loop:

    import dpsworker

    CATALOG = load_catalog()          # once per slice: the worker lives for the run

    def process(inputs, data_id, visit, params):
        # inputs: {key: value} for the stage's inputs; data_id: {"ccd": "3"};
        # visit: {"id": "v1", "properties": {...}, "locations": {"output": "/abs/path", ...}};
        # params: the stage's params.
        return {"matches": match(CATALOG, inputs["sources"], params["radius"])}

    if __name__ == "__main__":
        dpsworker.serve(process)

The function returns a dict of the items it produces (None for none). An
exception fails that data ID only: its message goes back as the error and
its traceback to stderr, which dpsbatch logs; the worker carries on. A
worker that exits (sys.exit, a crash) fails the data ID in flight and is
started again for the next one. Anything the function prints goes to
stderr, so it cannot be taken for an answer. Standard library only.
"""

import json
import sys
import traceback

__all__ = ["serve"]


def serve(process, stdin=None, stdout=None):
    """Answer requests with process(inputs, data_id, visit, params) until
    stdin ends (the end of the run)."""
    requests = stdin if stdin is not None else sys.stdin.buffer
    answers = stdout if stdout is not None else sys.stdout.buffer
    # Prints of the function (and of the libraries it calls) go to stderr.
    sys.stdout = sys.stderr
    for line in requests:
        if not line.strip():
            continue
        answers.write(_answer(process, line))
        answers.flush()


def _answer(process, line):
    """The answer line to one request line."""
    try:
        req = json.loads(line)
        visit = {"id": req.get("visit", ""), "properties": req.get("properties") or {},
                 "locations": req.get("locations") or {}}
        outputs = process(req.get("inputs") or {}, req.get("dataId") or {}, visit, req.get("params") or {})
        if outputs is None:
            outputs = {}
        if not isinstance(outputs, dict):
            raise TypeError("%s returned %s, not a dict of outputs" % (getattr(process, "__name__", "process"), type(outputs).__name__))
        text = json.dumps({"outputs": outputs}, allow_nan=False)
    except Exception as e:  # SystemExit and KeyboardInterrupt end the worker
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        text = json.dumps({"error": "%s: %s" % (type(e).__name__, e)})
    return text.encode("utf-8") + b"\n"
