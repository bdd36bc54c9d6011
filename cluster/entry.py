"""The ``pain3d`` console script: imports the command line itself, so that a Ctrl-C landing
while Python loads torch, Ray and the rest (seconds, before any handler exists) exits 130
with one line, like a Ctrl-C at any later moment."""
import sys

INTERRUPTED_EXIT = 130  # as cluster.console's (not imported here: that import is the point)


def main() -> int:
    try:
        from cluster.cli import main as run
    except KeyboardInterrupt:
        print("pain3d: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    return run()


if __name__ == "__main__":
    sys.exit(main())
