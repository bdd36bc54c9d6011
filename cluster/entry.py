"""The ``pain3d`` console script: imports the command line itself, so that a Ctrl-C landing
while Python loads torch, Ray and the rest (seconds, before any handler exists) exits 130
with one line, like a Ctrl-C at any later moment."""
import atexit
import os
import sys

INTERRUPTED_EXIT = 130  # as cluster.console's (not imported here: that import is the point)


def _exit_interrupted() -> None:
    """Exit 130 for certain. A Ctrl-C inside code that a C extension runs while importing
    leaves CPython's 'unhandled KeyboardInterrupt' flag set even when we caught it, and the
    interpreter then kills itself with SIGINT at exit (-2) instead of returning our status."""
    atexit._run_exitfuncs()  # what a normal exit would run (Ray's shutdown among them)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)


def main() -> int:
    try:
        from cluster.cli import main as run
    except KeyboardInterrupt:
        print("pain3d: interrupted", file=sys.stderr)
        _exit_interrupted()
    rc = run()
    if rc == INTERRUPTED_EXIT:
        _exit_interrupted()
    return rc


if __name__ == "__main__":
    sys.exit(main())
