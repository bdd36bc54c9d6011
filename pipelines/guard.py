"""The one way pain3d deletes or replaces anything: only what pain3d's own records say it
wrote.

Every output root pain3d writes into (a dataset folder, the runs or sweeps storage, an
export, a report, an evaluation) carries a marker file, written before anything else there,
naming the kind of output. A delete goes through :func:`guarded_delete`, which refuses unless

- the target lies inside a marked root (or is that root, when pain3d wrote the root whole:
  then the marker is *sealed* with every file's sha256, the root must be of the command's
  own kind, and every file in it must still be one the seal lists, unchanged);
- every file under a dataset folder it deletes (``frames/``, ``import/``,
  ``textured_meshes/``) has the name pain3d gives such files, and a record file
  (``run.json``, ``manifest.json``, ``import.json``) carries pain3d's format key and a
  matching content hash (:func:`stamp`): a file a user added is named, never deleted;
- the target is not, and does not contain, an input of the same command (the dataset being
  read, a teacher checkpoint, model weights).

Plain names for runs, sweeps and ablations are checked by :func:`check_name`, so a name can
never climb out of its storage folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import uuid
import os
import posixpath
import re
from pathlib import Path

import pyarrow.fs as pafs

from pipelines import storage

MARKER = ".pain3d-output.json"
RECORD_KEY, HASH_KEY = "pain3d_record", "pain3d_sha256"
RECORDS = ("run.json", "manifest.json", "import.json")
# what pain3d names the files it writes inside a dataset's folders (temporaries included)
OWN_NAMES = {"frames": re.compile(r"(\.tmp-[0-9a-f]+-)?identity=\d{6}\.parquet"),
             "import": re.compile(r"(\.tmp-[0-9a-f]+-)?identity=\d{6}\.json"),
             "textured_meshes": re.compile(r"\d{6}/(\.tmp-[0-9a-f]+-)?[\w.-]+\.(obj|mtl|png)")}
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


def _key(uri: str) -> str:
    """A comparable absolute form of a local path or an s3:// URI."""
    if uri.startswith("s3://"):
        return "s3://" + posixpath.normpath(uri[5:]).strip("/")
    return os.path.realpath(os.path.expanduser(uri))


def same_place(a: str, b: str) -> bool:
    """True when two local paths or s3:// URIs name the same place."""
    return _key(a) == _key(b)


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


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def stamp(obj: dict, record: str) -> dict:
    """``obj`` as a pain3d record: its format key and the sha256 of its content, so that a
    user's file of the same name (or one edited by hand) is never taken for pain3d's."""
    body = {k: v for k, v in obj.items() if k not in (RECORD_KEY, HASH_KEY)}
    return {**body, RECORD_KEY: f"{record}/1", HASH_KEY: _digest(body)}


def is_record(obj, record: str | None = None) -> bool:
    if not isinstance(obj, dict) or not str(obj.get(RECORD_KEY, "")).endswith("/1"):
        return False
    if record is not None and obj[RECORD_KEY] != f"{record}/1":
        return False
    body = {k: v for k, v in obj.items() if k not in (RECORD_KEY, HASH_KEY)}
    return obj.get(HASH_KEY) == _digest(body)


class ForeignFile(UnsafeDelete):
    """A file where pain3d would write that pain3d did not write."""


def read_record(loc: storage.Location, rel: str) -> dict | None:
    """The content of pain3d's record ``rel`` (None: absent); a file of that name that is not
    pain3d's record raises ForeignFile."""
    try:
        obj = storage.read_json(loc, rel)
    except ValueError:  # not JSON at all
        obj = "?"
    if obj is None:
        return None
    if not is_record(obj, rel.rsplit("/", 1)[-1].removesuffix(".json")):
        raise ForeignFile(f"{loc.join(rel)} is not a pain3d record (no {RECORD_KEY} key with a "
                          "matching content hash), so pain3d did not write it; move it away "
                          "or choose another folder")
    return {k: v for k, v in obj.items() if k not in (RECORD_KEY, HASH_KEY)}


def write_record(loc: storage.Location, rel: str, obj: dict) -> None:
    storage.write_json(loc, rel, stamp(obj, rel.rsplit("/", 1)[-1].removesuffix(".json")))


def mark_root(loc: storage.Location, kind: str, owns_root: bool = False) -> None:
    """Writes the marker into ``loc`` unless one is there. ``owns_root``: pain3d writes the
    folder whole (then :func:`seal` records its files once it is complete)."""
    if marker(loc) is None:
        storage.write_json(loc, MARKER, {"tool": "pain3d", "kind": kind, "owns_root": owns_root})


def marker(loc: storage.Location) -> dict | None:
    try:
        m = storage.read_json(loc, MARKER)
    except ValueError:
        return None
    return m if isinstance(m, dict) else None


def _local_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if (p.is_file() or p.is_symlink()) and p.name != MARKER}


def _sha(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seal(folder: Path, kind: str) -> None:
    """Marks a local folder pain3d has just written whole (a temporary, before it is renamed
    into place) with the sha256 of each of its files: the record that lets a later run of
    the same command replace it, and nothing else."""
    files = {rel: _sha(p) for rel, p in _local_files(Path(folder)).items()}
    storage.write_json(storage.resolve(str(folder)), MARKER,
                       {"tool": "pain3d", "kind": kind, "owns_root": True, "files": files})


def _check_sealed(loc: storage.Location, m: dict, kind: str | None) -> None:
    if kind is not None and m.get("kind") != kind:
        raise UnsafeDelete(f"refusing to replace {loc.uri}: it is a pain3d {m.get('kind')} "
                           f"folder, not a {kind}; choose another folder")
    if loc.is_s3 or not isinstance(m.get("files"), dict):
        raise UnsafeDelete(f"refusing to replace {loc.uri}: its marker lists no files pain3d "
                           "wrote (an older pain3d, or not sealed); delete it yourself if you "
                           "mean to, or choose another folder")
    files = m["files"]
    for rel, p in _local_files(Path(loc.root)).items():
        if rel not in files or p.is_symlink() or _sha(p) != files[rel]:
            what = "added" if rel not in files else "changed"
            raise UnsafeDelete(f"refusing to replace {loc.uri}: {rel} was {what} after pain3d "
                               "wrote the folder (a file of yours?); move it out or choose "
                               "another folder")


def _check_contents(loc: storage.Location, rel: str, path: str) -> None:
    """Every file under ``rel`` is one pain3d writes there (by name); a record is pain3d's."""
    top = posixpath.normpath(rel).split("/", 1)[0]
    if posixpath.normpath(rel) in RECORDS:
        read_record(loc, rel)  # raises ForeignFile unless it is pain3d's
        return
    pattern = OWN_NAMES.get(top)
    if pattern is None or loc.fs.get_file_info(path).type != pafs.FileType.Directory:
        return
    try:
        infos = loc.fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except Exception as e:  # noqa: BLE001
        raise storage.explain(loc, e) from e
    for info in infos:
        inner = info.path[len(path):].lstrip("/")
        if info.type != pafs.FileType.Directory and not pattern.fullmatch(inner):
            raise UnsafeDelete(f"refusing to delete {loc.join(top)}: {top}/{inner} is not a "
                               "file pain3d writes there (a file of yours?); move it out first")


def check_delete(loc: storage.Location, rel: str, inputs: tuple[str, ...] | list = (),
                 kind: str | None = None) -> str:
    """Raises UnsafeDelete unless ``rel`` inside ``loc`` may be deleted; returns its path.
    ``rel`` = "" is the root itself, allowed only for a sealed root of ``kind``."""
    target = _target(loc, rel)
    m = marker(loc)
    if m is None or m.get("tool") != "pain3d":
        raise UnsafeDelete(f"refusing to delete {target}: {loc.uri} has no pain3d marker "
                           f"({MARKER}), so pain3d did not make it; remove it yourself if "
                           "you mean to")
    for inp in inputs:
        if inp and contains(target, inp):
            raise UnsafeDelete(f"refusing to delete {target}: it holds {inp}, an input of this "
                               "command; choose an output outside your inputs")
    if target == _target(loc, ""):
        if not m.get("owns_root"):
            raise UnsafeDelete(f"refusing to delete {loc.uri} as a whole: pain3d did not "
                               "create that folder")
        _check_sealed(loc, m, kind)
        return loc.root
    path = loc.join(posixpath.normpath(rel))
    _check_contents(loc, rel, path)
    return path


def guarded_delete(loc: storage.Location, rel: str | list, inputs: tuple[str, ...] | list = (),
                   kind: str | None = None) -> None:
    """Deletes ``rel`` (a file or a folder, or a list of them) inside the marked root ``loc``
    after :func:`check_delete` of every one of them first; absent is fine."""
    paths = [check_delete(loc, r, inputs, kind) for r in ([rel] if isinstance(rel, str) else rel)]
    try:
        for path in paths:
            kind_ = loc.fs.get_file_info(path).type
            if kind_ == pafs.FileType.File:
                loc.fs.delete_file(path)
            elif kind_ == pafs.FileType.Directory:
                loc.fs.delete_dir(path)
    except Exception as e:  # noqa: BLE001
        raise storage.explain(loc, e) from e


def check_output_folder(out: str, inputs: list[str], overwrite: bool, kind: str,
                        inside_ok: bool = False, any_kind: bool = False) -> None:
    """A folder pain3d writes whole (an export, a report, an evaluation): not inside an input
    (unless ``inside_ok``: a report beside the dataset's frames) nor holding one, and replaced
    only with ``overwrite`` and only when it is a sealed folder of ``kind`` holding nothing
    else. ``any_kind``: a command whose ``overwrite`` is the user's own --overwrite may
    replace a sealed folder of another kind too, still only when it holds pain3d's files."""
    for inp in inputs:
        if contains(out, inp) or (contains(inp, out) and not inside_ok):
            raise UnsafeDelete(f"output {out} {'holds' if contains(out, inp) else 'is inside'} "
                               f"the input {inp}; choose a folder outside it")
    if os.path.lexists(out):
        if not os.path.isdir(out) or os.path.islink(out):
            raise UnsafeDelete(f"refusing to replace {out}: it is a file, not a pain3d {kind} "
                               "folder; choose another folder")
        if marker(storage.resolve(out)) is None:
            raise UnsafeDelete(f"{out} exists and has no pain3d marker ({MARKER}), so it is "
                               f"not a pain3d {kind} folder; choose another folder")
        check_delete(storage.resolve(out), "", inputs, None if any_kind else kind)
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite or choose another folder")


@contextlib.contextmanager
def whole_folder(out: str, kind: str, inputs: list[str], any_kind: bool = False):
    """Yields a temporary folder beside ``out`` to write a folder of ``kind`` into; on success
    it is sealed and renamed into place (an earlier ``out`` replaced only after
    :func:`check_delete`, of ``kind`` unless ``any_kind``), on any failure removed: ``out``
    appears whole or not at all."""
    dest = Path(out)
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        mark_root(storage.resolve(str(tmp)), kind, owns_root=True)
        yield tmp
        seal(tmp, kind)
        if os.path.lexists(dest):
            guarded_delete(storage.resolve(out), "", inputs, kind=None if any_kind else kind)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # this call's own temporary folder
        raise


def claim_names(loc: storage.Location, names: tuple[str, ...] | list, out: str) -> None:
    """Before the first write into a folder with no pain3d marker: none of the names this
    command writes may exist there already (they would be the user's)."""
    if marker(loc) is not None:
        return
    there = [n for n in names if loc.fs.get_file_info(loc.join(n)).type != pafs.FileType.NotFound]
    if there:
        raise ForeignFile(f"{out} already holds {', '.join(n + ('/' if '.' not in n else '') for n in there)}"
                          " that pain3d did not write (no pain3d marker); choose another --out")


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
