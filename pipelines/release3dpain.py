"""The 3D-Pain release as the authors publish it, and pain3d's own export, read by one set
of name rules.

Files may lie in plain folders or in ``.tar.gz`` / ``.tgz`` / ``.tar`` bundles anywhere
under the root (as on Hugging Face: ``annotations/annotations_00000.tar.gz``, ...); bundles
are read as streams, never unpacked to disk. Each file name is matched against
:data:`RULES` in order (the README lists them with examples); a file that matches none is
listed in the import report, and ``textured_meshes/`` is counted, not imported.
"""
from __future__ import annotations

import json
import re
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

IMAGE = r"\.(?:png|jpg|jpeg)$"
# where the authors' loader cuts an image name down to its annotation's base name
CUTS = ("_textured_view_", "_view_", "_bg_", "_render_", "_deform_", "_inpainted", "_textured")
_CUT = "|".join(re.escape(c) for c in CUTS)
BUNDLES = (".tar.gz", ".tgz", ".tar")

# (rule, kind, pattern on the file name, folder the name must lie under (or None), example)
RULES = [
    ("authors' annotation", "annotation", r"^(?P<s>.+?)_pain_(?P<e>\d+)_annotations\.json$",
     None, "flame_sample_0000_pain_3_annotations.json"),
    ("pain3d annotation", "annotation", r"^(?P<s>.+?)_(?P<e>\d+)\.json$", "annotations",
     "annotations/000012_03.json"),
    ("authors' heatmap", "heatmap", rf"^(?P<s>.+?)_pain_(?P<e>\d+)_heatmap(?P<rest>.*?){IMAGE}",
     None, "flame_sample_0000_pain_3_heatmap.png (per view: ..._heatmap_view_001.png)"),
    ("pain3d heatmap", "heatmap", rf"^(?P<s>.+?)_(?P<e>\d+)(?:_(?P<v>\d+))?{IMAGE}",
     "heatmaps", "heatmaps/000012_03_1.png, heatmaps/000012_03.png"),
    ("authors' pain frame", "frame", rf"^(?P<s>.+?)_pain_(?P<e>\d+)(?P<rest>(?:{_CUT}).*?)?{IMAGE}",
     None, "flame_sample_0000_pain_3_textured_view_000_inpainted.jpg, ..._pain_3_view_001.png"),
    ("authors' neutral frame", "frame", rf"^(?P<s>.+?)_neutral(?P<rest>(?:{_CUT}).*?)?{IMAGE}",
     None, "flame_sample_0000_neutral_textured_view_000_inpainted.jpg"),
    ("pain3d frame", "frame", rf"^(?P<s>.+?)_(?P<e>neutral|\d+)(?:_(?P<v>\d+))?{IMAGE}",
     "images", "images/000012_neutral_0.png, images/000012_03_2.png"),
]
_RULES = [(n, k, re.compile(p, re.I), f) for n, k, p, f, _ in RULES]
_VIEW = re.compile(r"_view_(\d+)")


@dataclass(frozen=True)
class Ref:
    """One file: a plain file (``member`` empty) or a member of a bundle."""

    path: str
    member: str = ""

    @property
    def label(self) -> str:
        return f"{self.path}:{self.member}" if self.member else self.path


@dataclass
class Frame:
    subject: str
    expression: int  # 0: neutral
    view: int | None
    ref: Ref
    rule: str


@dataclass
class Index:
    root: Path
    annotations: dict = field(default_factory=dict)  # (subject, expression) -> raw dict
    frames: dict = field(default_factory=dict)  # subject -> [Frame]
    heatmaps: dict = field(default_factory=dict)  # (subject, expression, view|None) -> Ref
    rules: Counter = field(default_factory=Counter)
    unmatched: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)
    meshes: int = 0

    def heatmap(self, f: Frame) -> Ref | None:
        return (self.heatmaps.get((f.subject, f.expression, f.view))
                or self.heatmaps.get((f.subject, f.expression, None)))


def classify(parts: tuple[str, ...]) -> tuple[str, str, dict] | None:
    """(rule, kind, fields) of the file at path ``parts`` (folders + name), or None."""
    name = parts[-1]
    for rule, kind, pat, folder in _RULES:
        if folder is not None and folder not in (p.lower() for p in parts[:-1]):
            continue
        m = pat.match(name)
        if m:
            g = m.groupdict()
            e = g.get("e")
            expr = 0 if (e is None or e.lower() == "neutral") else int(e)
            view = g.get("v")
            if view is None and g.get("rest"):
                v = _VIEW.search(g["rest"])
                view = v.group(1) if v else None
            return rule, kind, {"subject": g["s"], "expression": expr,
                                "view": None if view is None else int(view)}
    return None


def is_bundle(name: str) -> bool:
    return name.lower().endswith(BUNDLES)


def _walk(root: Path):
    """(Ref, path parts, opener of its bytes) of every file, bundle members included."""
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root).parts
        if not is_bundle(p.name):
            yield Ref(str(p)), rel, p.read_bytes
            continue
        try:
            with tarfile.open(p, "r|*") as tar:
                for m in tar:
                    if m.isfile():
                        parts = rel[:-1] + PurePosixPath(m.name).parts
                        yield Ref(str(p), m.name), parts, lambda m=m, t=tar: t.extractfile(m).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ValueError(f"bundle {p} cannot be read ({e}); download it again") from None


def scan(root: str | Path) -> Index:
    """Index the release under ``root``: annotations read (small), frames and heatmaps
    located (their bytes are read later, where the shards are written)."""
    from pipelines.layout3dpain import normalise_annotation

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; give the release's root folder")
    idx = Index(root)
    for ref, parts, read in _walk(root):
        if "textured_meshes" in (q.lower() for q in parts[:-1]):
            idx.meshes += 1
            continue
        hit = classify(parts)
        if hit is None:
            idx.unmatched.append(ref.label)
            continue
        rule, kind, f = hit
        idx.rules[rule] += 1
        key = (f["subject"], f["expression"])
        if kind == "annotation":
            try:
                raw = json.loads(read())
            except (ValueError, UnicodeDecodeError) as e:
                raise ValueError(f"annotation {ref.label} is not valid JSON ({e})") from e
            idx.annotations[key] = normalise_annotation(raw, ref.label)
        elif kind == "heatmap":
            idx.heatmaps[key + (f["view"],)] = ref
        else:
            idx.frames.setdefault(f["subject"], []).append(Frame(*key, f["view"], ref, rule))
    _number_views(idx)
    return idx


def _number_views(idx: Index) -> None:
    """Frames without a view index take the next free views of their expression, in name
    order; a second file of the same frame is listed as a duplicate, not imported."""
    for subject, frames in idx.frames.items():
        kept, seen = [], set()
        by_expr: dict[int, list[Frame]] = {}
        for f in sorted(frames, key=lambda f: f.ref.label):
            by_expr.setdefault(f.expression, []).append(f)
        for e, fs in sorted(by_expr.items()):
            nxt = max([f.view for f in fs if f.view is not None], default=-1) + 1
            for f in fs:
                if f.view is None:
                    f.view, nxt = nxt, nxt + 1
                if (e, f.view) in seen:
                    idx.duplicates.append(f.ref.label)
                    continue
                seen.add((e, f.view))
                kept.append(f)
        idx.frames[subject] = kept


def identity_numbers(subjects) -> dict[str, int]:
    """Subject name -> identity: the name's last number (``flame_sample_0042`` -> 42) when
    every name has one and they differ, else the name's place in sorted order."""
    names = sorted(subjects)
    nums = [re.findall(r"\d+", n) for n in names]
    if all(nums) and len({int(n[-1]) for n in nums}) == len(names):
        return {n: int(k[-1]) for n, k in zip(names, nums)}
    return {n: k for k, n in enumerate(names)}


def read_refs(refs: list[Ref]) -> dict[str, bytes]:
    """The bytes of ``refs`` by label: each bundle streamed once, in its own order."""
    out: dict[str, bytes] = {}
    by_bundle: dict[str, set[str]] = {}
    for r in refs:
        if r.member:
            by_bundle.setdefault(r.path, set()).add(r.member)
        else:
            out[r.label] = Path(r.path).read_bytes()
    for path, members in by_bundle.items():
        with tarfile.open(path, "r|*") as tar:
            for m in tar:
                if m.name in members:
                    out[Ref(path, m.name).label] = tar.extractfile(m).read()
    return out


def report(idx: Index, examples: int = 5) -> dict:
    """What the scan found, for import.json and the manifest: files per rule, and every file
    that was not imported (with a few names)."""
    return {"files_by_rule": dict(sorted(idx.rules.items())),
            "unmatched": {"files": len(idx.unmatched), "examples": idx.unmatched[:examples]},
            "duplicates": {"files": len(idx.duplicates), "examples": idx.duplicates[:examples]},
            "textured_mesh_files": idx.meshes}
