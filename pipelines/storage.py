"""Output locations: a local folder or ``s3://bucket/prefix``, through pyarrow filesystems.

S3 endpoint and credentials come from the standard AWS environment variables
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION /
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL); nothing is stored in configs or logged.

Every write goes to a temporary name first and is then moved into place (a rename on local
disk, a server-side copy on S3, both atomic for the reader): an object is whole or absent.
"""
from __future__ import annotations

import errno
import json
import os
import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs


class StorageError(RuntimeError):
    """Storage the user must fix (missing bucket, bad credentials, unwritable folder)."""


@dataclass(frozen=True)
class Location:
    fs: pafs.FileSystem
    root: str  # path inside fs, no trailing slash
    uri: str  # as the user wrote it (for messages)

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/")] + [p.strip("/") for p in parts if p])

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")


def s3_filesystem() -> pafs.S3FileSystem:
    kw = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if endpoint:
        u = urlparse(endpoint)
        kw["endpoint_override"] = u.netloc or u.path
        kw["scheme"] = u.scheme or "https"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kw["region"] = region
    return pafs.S3FileSystem(**kw)


def resolve(uri: str) -> Location:
    if uri.startswith("s3://"):
        u = urlparse(uri)
        if not u.netloc:
            raise StorageError(f"output {uri!r} names no bucket; use s3://bucket/prefix")
        return Location(s3_filesystem(), f"{u.netloc}{u.path}".rstrip("/"), uri)
    if "://" in uri:
        raise StorageError(f"unsupported output {uri!r}; use a local path or s3://bucket/prefix")
    return Location(pafs.LocalFileSystem(), os.path.abspath(uri).rstrip("/") or "/", uri)


_ERRNO = re.compile(r"\[Errno (\d+)\] [^:'\n]*(?:: '([^']+)')?")
_ERRNO_FIX = {
    errno.ENOSPC: "the disk holding {path} is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota for {path} is used up; free some space or write elsewhere",
    errno.EROFS: "{path} is on a read-only file system; write to a folder you can change "
                 "(another --out, or train.storage)",
    errno.EACCES: "permission denied for {path}; fix its permissions or choose another folder",
    errno.EPERM: "permission denied for {path}; fix its permissions or choose another folder",
    errno.ENOTDIR: "{path} lies under a file where a folder is needed; choose a folder path",
}


def errno_sentence(msg: str, e: BaseException | None = None, path: str | None = None) -> str:
    """A raw "[Errno 28] No space left on device: '...'" made into a sentence naming the
    path (``path``, else the message's, else the exception's) and the fix; other messages
    as they are."""
    m = _ERRNO.search(msg)
    code = int(m.group(1)) if m else getattr(e, "errno", None)
    if code not in _ERRNO_FIX:
        return msg
    path = path or (m.group(2) if m else None) or getattr(e, "filename", None) or \
        "the output folder"
    return _ERRNO_FIX[code].format(path=path)


def explain(loc: Location, e: Exception) -> StorageError:
    msg = str(e)
    flat = msg.replace("_", "").lower()  # pyarrow spells AWS codes as INVALID_ACCESS_KEY_ID
    if loc.is_s3:
        if "nosuchbucket" in flat or "bucket does not exist" in flat:
            return StorageError(f"S3 bucket of {loc.uri} does not exist; create it or fix the URI")
        if any(k in flat for k in ("accessdenied", "invalidaccesskeyid", "signaturedoesnotmatch",
                                   "credentials", "invalidtoken", "expiredtoken")) \
                or re.search(r"(?<![\d.:])403(?!\d)", msg):  # HTTP 403, not a port like :40371
            return StorageError(f"S3 refused access to {loc.uri}; check AWS_ACCESS_KEY_ID / "
                                "AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for non-AWS S3)")
        return StorageError(f"cannot reach S3 for {loc.uri} ({msg.splitlines()[0]}); check "
                            "AWS_ENDPOINT_URL and the network")
    said = errno_sentence(msg, e, loc.uri)
    if said != msg:
        return StorageError(said)
    return StorageError(f"cannot write to {loc.uri} ({msg.splitlines()[0]}); choose a "
                        "writable --out folder")


def check_writable(loc: Location) -> None:
    """Fail early, with one sentence, if the output can't be written."""
    probe = loc.join(f"_probe-{uuid.uuid4().hex}")
    made = not loc.is_s3 and not os.path.exists(loc.root)
    try:
        if not loc.is_s3:
            loc.fs.create_dir(loc.root, recursive=True)
        with loc.fs.open_output_stream(probe) as f:
            f.write(b"ok")
        loc.fs.delete_file(probe)  # the probe this call just wrote, nothing else
        if made:
            os.rmdir(loc.root)  # the (empty) folder this check made: the probe leaves no trace
    except Exception as e:  # noqa: BLE001 - turned into one clear sentence
        raise explain(loc, e) from e


def write_bytes(loc: Location, rel: str, data: bytes) -> None:
    final = loc.join(rel)
    parent, name = final.rsplit("/", 1)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{name}"
    try:
        if not loc.is_s3:
            loc.fs.create_dir(parent, recursive=True)
        with loc.fs.open_output_stream(tmp) as f:
            f.write(data)
        loc.fs.move(tmp, final)
    except Exception as e:  # noqa: BLE001
        try:
            loc.fs.delete_file(tmp)  # this call's own temporary
        except Exception:  # noqa: BLE001 - the temp may never have appeared
            pass
        raise explain(loc, e) from e


def read_bytes(loc: Location, rel: str) -> bytes | None:
    path = loc.join(rel)
    try:
        if loc.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with loc.fs.open_input_stream(path) as f:
            return f.read()
    except Exception as e:  # noqa: BLE001
        raise explain(loc, e) from e


def write_json(loc: Location, rel: str, obj) -> None:
    write_bytes(loc, rel, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())


def read_json(loc: Location, rel: str):
    b = read_bytes(loc, rel)
    return None if b is None else json.loads(b)


def list_files(loc: Location, rel: str, suffix: str = "") -> list[str]:
    """Names (not paths) of the files directly under rel; temporaries excluded."""
    sel = pafs.FileSelector(loc.join(rel), allow_not_found=True, recursive=False)
    try:
        infos = loc.fs.get_file_info(sel)
    except Exception as e:  # noqa: BLE001
        raise explain(loc, e) from e
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.File
                  and i.base_name.endswith(suffix) and not i.base_name.startswith("."))
