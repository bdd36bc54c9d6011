"""A user's files beside pain3d's outputs, and a snapshot (paths and hashes) to prove that a
command left every one of them as it was."""
import hashlib
from pathlib import Path

USER_FILES = {"thesis.tex": b"\\documentclass{article} chapter 1",
              "frames/mine.txt": b"my own frames notes",
              "textured_meshes/scan.obj": b"v 0 0 0",
              "victim/data.csv": b"a,b\n1,2\n"}


def make_user_files(root: Path) -> Path:
    for rel, data in USER_FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (and 'dir' for folders) under root."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


def assert_kept(before: dict[str, str], root: Path, made_by_pain3d=()) -> None:
    """Every path of the snapshot is still there unchanged; anything new lies under one of
    ``made_by_pain3d`` (relative prefixes)."""
    after = snapshot(root)
    changed = {k for k, v in before.items() if after.get(k) != v}
    assert not changed, f"user files changed or gone: {sorted(changed)}"
    new = [k for k in after if k not in before
           and not any(k == m or k.startswith(m.rstrip("/") + "/") for m in made_by_pain3d)]
    assert not new, f"unexpected new files: {new}"


def run_cli(argv, capsys):
    """``pain3d argv`` in-process: its exit code, its stderr and the ``pain3d: error:`` lines."""
    from cluster.cli import main

    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err, [x for x in err.splitlines() if x.startswith("pain3d: error:")]


def one_error_line(rc, err, lines, *needles):
    """Exit 2 with one error line holding each needle, and no traceback."""
    assert rc == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
