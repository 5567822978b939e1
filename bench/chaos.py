"""Chaos: faults at every step boundary, redeliveries, races, poison — and the counts that must
stay zero.

Usage: ``python bench/chaos.py [--quick] [--seed N] [--verbose] [--stack]``

Runs every scenario of :mod:`distillery.local.chaos` on the in-memory ports (the unkind fakes: a
compare-and-set that runs twice, deployments that take time), driving the real services as
Pub/Sub and Eventarc would, with a crash before and after every port call of a launch and of a
promotion (``--quick`` samples them). With ``--stack`` it also starts an ephemeral local stack
(emulators, functions, bridge; stopped at the end) and runs the scenarios of
:mod:`distillery.local.chaos_stack` on it: ``kill -9`` of a function process in the middle of an
event, then the supervisor's restart and the bridge's redelivery. Prints each scenario that did
not hold, then one line over all of them:

    chaos: N scenarios, N held, duplicate jobs N, lost events N, wrong champions N

Exits 1 when a scenario did not hold, 2 when the local stack could not start.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sample the crash points")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffles (default 0)")
    parser.add_argument("--verbose", action="store_true", help="list every scenario")
    parser.add_argument(
        "--stack",
        action="store_true",
        help="also kill -9 functions mid-event on an ephemeral local stack (needs Java, the Cloud "
        "SDK emulators and fake-gcs-server)",
    )
    args = parser.parse_args(argv)
    # The services log every injected fault; the summary is what this prints.
    logging.disable(logging.CRITICAL)
    from distillery.local import chaos

    started = time.perf_counter()
    results = chaos.run_all(quick=args.quick, seed=args.seed)
    timings = [f"fakes {time.perf_counter() - started:.1f} s"]
    if args.stack:
        from distillery.local import chaos_stack
        from distillery.local.stack.errors import LocalStackError

        stack_started = time.perf_counter()
        try:
            results += chaos_stack.run_all()
        except LocalStackError as exc:  # it did not start: the stack scenarios cannot run
            print(f"chaos: the local stack did not start: {exc}", file=sys.stderr)
            return 2
        timings.append(f"stack {time.perf_counter() - stack_started:.1f} s")
    for result in results:
        if args.verbose or not result.counts.held:
            verdict = "held" if result.counts.held else "FAILED"
            notes = "; ".join(result.counts.notes)
            print(f"  {verdict:6}  {result.name}{'  (' + notes + ')' if notes else ''}")
    print(f"({', '.join(timings)})")
    print(chaos.summary(results))
    return 0 if all(result.counts.held for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
