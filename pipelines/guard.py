"""The one way pain3d deletes anything: only what pain3d made.

Every output root pain3d writes into (a dataset folder, the runs or sweeps storage, an
export, a dataset card) carries a marker file, written before anything else there. A delete
goes through :func:`guarded_delete`, which refuses unless

- the target lies inside a marked root (or is that root, when pain3d created the root as a
  whole: exports and cards);
- the target is not, and does not contain, an input of the same command (the dataset being
  read, a teacher checkpoint, model weights).

Plain names for runs, sweeps and ablations are checked by :func:`check_name`, so a name can
never climb out of its storage folder.
"""
from __future__ import annotations

import os
import posixpath
import re

import pyarrow.fs as pafs

from pipelines import storage

MARKER = ".pain3d-output.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class UnsafeDelete(ValueError):
    """A delete that could touch data pain3d did not make; the message says why."""


class BadName(ValueError):
    """A run, sweep or ablation name that is not a plain name."""


def check_name(kind: str, name: str) -> str:
    """``name`` must be a plain folder name: letters, digits, '.', '_', '-'; no '/', no '..'."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise BadName(f"{kind} name {name!r} is not a plain name; use letters, digits, '.', "
                      "'_' and '-' (no '/' or '..', at most 128 characters)")
    return name


def check_resume(prior, resume: bool, kind: str, name: str, where: str, verb: str,
                 exists=FileExistsError) -> None:
    """A named run, sweep or cross-validation: an existing one needs ``resume`` (else
    ``exists`` is raised), and ``resume`` needs an existing one (``prior`` not None)."""
    if prior is not None and not resume:
        raise exists(f"{kind} {name!r} already exists in {where}; pass --resume to {verb} it or "
                     "choose another --name")
    if prior is None and resume:
        raise FileNotFoundError(f"no {kind} {name!r} in {where} to resume; run it without "
                                "--resume first")


def mark_root(loc: storage.Location, kind: str, owns_root: bool = False) -> None:
    """Writes the marker into ``loc`` unless one is there. ``owns_root``: pain3d created the
    folder itself, so the folder as a whole may be replaced later (exports, cards)."""
    if marker(loc) is None:
        storage.write_json(loc, MARKER, {"tool": "pain3d", "kind": kind, "owns_root": owns_root})


def marker(loc: storage.Location) -> dict | None:
    return storage.read_json(loc, MARKER)


def _key(uri: str) -> str:
    """A comparable absolute form of a local path or an s3:// URI."""
    if uri.startswith("s3://"):
        return "s3://" + posixpath.normpath(uri[5:]).strip("/")
    return os.path.realpath(os.path.expanduser(uri))


def contains(outer: str, inner: str) -> bool:
    """True when ``inner`` is ``outer`` or lies inside it (local paths or s3:// URIs)."""
    a, b = _key(outer), _key(inner)
    return a == b or b.startswith(a.rstrip("/") + "/")


def _target(loc: storage.Location, rel: str) -> str:
    """The URI-like key of rel inside loc, refusing anything that escapes loc."""
    norm = posixpath.normpath(rel) if rel else ""
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        raise UnsafeDelete(f"refusing to delete {rel!r}: it is outside {loc.uri}")
    base = f"s3://{loc.root}" if loc.is_s3 else loc.root
    return base if norm in ("", ".") else f"{base.rstrip('/')}/{norm}"


def check_delete(loc: storage.Location, rel: str, inputs: tuple[str, ...] | list = ()) -> str:
    """Raises UnsafeDelete unless ``rel`` inside ``loc`` may be deleted; returns its path.
    ``rel`` = "" is the root itself, allowed only for roots pain3d created whole."""
    target = _target(loc, rel)
    m = marker(loc)
    if m is None or m.get("tool") != "pain3d":
        raise UnsafeDelete(f"refusing to delete {target}: {loc.uri} has no pain3d marker "
                           f"({MARKER}), so pain3d did not make it; remove it yourself if "
                           "you mean to")
    if target == _target(loc, "") and not m.get("owns_root"):
        raise UnsafeDelete(f"refusing to delete {loc.uri} as a whole: pain3d did not create "
                           "that folder")
    for inp in inputs:
        if inp and contains(target, inp):
            raise UnsafeDelete(f"refusing to delete {target}: it holds {inp}, an input of this "
                               "command; choose an output outside your inputs")
    return loc.join(posixpath.normpath(rel)) if rel else loc.root


def guarded_delete(loc: storage.Location, rel: str, inputs: tuple[str, ...] | list = ()) -> None:
    """Deletes ``rel`` (a file or a folder) inside the marked root ``loc`` after
    :func:`check_delete`; absent is fine."""
    path = check_delete(loc, rel, inputs)
    try:
        kind = loc.fs.get_file_info(path).type
        if kind == pafs.FileType.File:
            loc.fs.delete_file(path)
        elif kind == pafs.FileType.Directory:
            loc.fs.delete_dir(path)
    except Exception as e:  # noqa: BLE001
        raise storage.explain(loc, e) from e


def check_output_folder(out: str, inputs: list[str], overwrite: bool,
                        inside_ok: bool = False) -> None:
    """A folder pain3d writes whole (an export, a card): not inside an input (unless
    ``inside_ok``: a card beside the dataset's frames) nor holding one, and replaced only with
    ``overwrite`` and only when pain3d wrote it."""
    for inp in inputs:
        if contains(out, inp) or (contains(inp, out) and not inside_ok):
            raise UnsafeDelete(f"output {out} {'holds' if contains(out, inp) else 'is inside'} "
                               f"the input {inp}; choose a folder outside it")
    if os.path.lexists(out):
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite or choose another folder")
        if not os.path.isdir(out):
            raise UnsafeDelete(f"refusing to replace {out}: it is a file, not a pain3d output")
        check_delete(storage.resolve(out), "", inputs)


def remove_empty_dir(loc: storage.Location) -> None:
    """Removes the local root folder if it is empty (harmless: it holds nothing)."""
    if not loc.is_s3:
        try:
            os.rmdir(loc.root)
        except OSError:
            pass


def remove_temporaries(loc: storage.Location, rel: str) -> int:
    """Deletes the temporaries of writers that died mid-write (``.tmp-*`` under rel), each
    through the guard; only safe when no writer is running. Returns how many."""
    sel = pafs.FileSelector(loc.join(rel), allow_not_found=True, recursive=True)
    try:
        infos = loc.fs.get_file_info(sel)
    except Exception as e:  # noqa: BLE001
        raise storage.explain(loc, e) from e
    n = 0
    for info in infos:
        if info.type == pafs.FileType.File and info.base_name.startswith(".tmp-"):
            guarded_delete(loc, info.path[len(loc.root):].lstrip("/"))
            n += 1
    return n
