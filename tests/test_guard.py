"""The one guarded delete: only inside a marked root, never an input, never escaping."""
import pytest

from pipelines import guard, storage
from tests.sandbox import assert_kept, make_user_files, snapshot


@pytest.fixture
def root(tmp_path):
    loc = storage.resolve(str(tmp_path / "out"))
    (tmp_path / "out" / "frames").mkdir(parents=True)
    (tmp_path / "out" / "frames" / "identity=000001.parquet").write_bytes(b"x")
    make_user_files(tmp_path)
    return tmp_path, loc


def test_deletes_inside_a_marked_root(root):
    tmp, loc = root
    before = snapshot(tmp)
    guard.mark_root(loc, "dataset")
    guard.guarded_delete(loc, "frames")
    assert not (tmp / "out" / "frames").exists()
    assert_kept({k: v for k, v in before.items() if not k.startswith("out/")}, tmp, ["out"])


@pytest.mark.parametrize("rel", ["..", "../victim", "/etc", "frames/../../victim"])
def test_never_escapes_the_root(root, rel):
    tmp, loc = root
    guard.mark_root(loc, "dataset")
    before = snapshot(tmp)
    with pytest.raises(guard.UnsafeDelete, match="outside"):
        guard.guarded_delete(loc, rel)
    assert snapshot(tmp) == before


def test_unmarked_root_is_refused(root):
    tmp, loc = root
    before = snapshot(tmp)
    with pytest.raises(guard.UnsafeDelete, match="no pain3d marker"):
        guard.guarded_delete(loc, "frames")
    assert snapshot(tmp) == before


def test_the_root_itself_only_when_pain3d_sealed_it(root):
    tmp, loc = root
    guard.mark_root(loc, "dataset")  # a folder pain3d writes into, not one it created whole
    with pytest.raises(guard.UnsafeDelete, match="as a whole"):
        guard.guarded_delete(loc, "")
    assert (tmp / "out" / "frames").exists()
    (tmp / "out" / guard.MARKER).unlink()
    guard.mark_root(loc, "export", owns_root=True)  # an older marker: no file list
    with pytest.raises(guard.UnsafeDelete, match="lists no files pain3d wrote"):
        guard.guarded_delete(loc, "", kind="export")
    guard.seal(tmp / "out", "export")
    with pytest.raises(guard.UnsafeDelete, match="it is a pain3d export folder, not a report"):
        guard.guarded_delete(loc, "", kind="report")
    assert (tmp / "out" / "frames").exists()
    guard.guarded_delete(loc, "", kind="export")
    assert not (tmp / "out").exists()


@pytest.mark.parametrize("change", ["added", "changed"])
def test_a_sealed_root_with_a_users_file_is_never_replaced(root, change):
    tmp, loc = root
    guard.seal(tmp / "out", "report")
    if change == "added":
        (tmp / "out" / "README_release.txt").write_text("my notes")
    else:
        (tmp / "out" / "frames" / "identity=000001.parquet").write_bytes(b"edited by hand")
    before = snapshot(tmp)
    rel = "README_release.txt" if change == "added" else "frames/identity=000001.parquet"
    with pytest.raises(guard.UnsafeDelete, match=f"{rel} was {change} after pain3d wrote"):
        guard.guarded_delete(loc, "", kind="report")
    assert snapshot(tmp) == before


def test_a_dataset_folder_with_a_users_file_is_never_deleted(root):
    tmp, loc = root
    guard.mark_root(loc, "dataset")
    (tmp / "out" / "frames" / "my_labels.csv").write_text("a")
    (tmp / "out" / "textured_meshes" / "000001").mkdir(parents=True)
    (tmp / "out" / "textured_meshes" / "000001" / "head.obj").write_text("v 0 0 0")
    before = snapshot(tmp)
    with pytest.raises(guard.UnsafeDelete, match="frames/my_labels.csv is not a file pain3d"):
        guard.guarded_delete(loc, ["textured_meshes", "frames"])  # all checked before any goes
    assert snapshot(tmp) == before
    (tmp / "out" / "frames" / "my_labels.csv").unlink()
    guard.guarded_delete(loc, ["textured_meshes", "frames"])
    assert not (tmp / "out" / "frames").exists() and not (tmp / "out" / "textured_meshes").exists()


@pytest.mark.parametrize("text", ['{"experiment": 7}', "[1, 2]", "not json",
                                  '{"content_hash": "h", "pain3d_record": "run/1"}'])
def test_records_count_only_with_the_format_key_and_a_matching_hash(root, text):
    tmp, loc = root
    guard.mark_root(loc, "dataset")
    (tmp / "out" / "run.json").write_text(text)
    with pytest.raises(guard.ForeignFile, match="run.json is not a pain3d record"):
        guard.read_record(loc, "run.json")
    with pytest.raises(guard.UnsafeDelete, match="not a pain3d record"):
        guard.guarded_delete(loc, "run.json")
    assert (tmp / "out" / "run.json").read_text() == text
    guard.write_record(loc, "run.json", {"content_hash": "h"})
    assert guard.read_record(loc, "run.json") == {"content_hash": "h"}
    stamped = guard.stamp({"content_hash": "h"}, "run")
    assert not guard.is_record(dict(stamped, content_hash="other"))  # edited by hand
    assert not guard.is_record(stamped, "manifest")  # another record's format


def test_claim_names_refuses_a_users_files_where_pain3d_would_write(tmp_path):
    (tmp_path / "import").mkdir()
    (tmp_path / "manifest.json").write_text("{}")
    loc = storage.resolve(str(tmp_path))
    with pytest.raises(guard.ForeignFile, match="already holds import/, manifest.json that "
                       "pain3d did not write"):
        guard.claim_names(loc, ("frames", "import", "import.json", "manifest.json"), str(tmp_path))
    guard.claim_names(loc, ("frames", "run.json"), str(tmp_path))  # none of them there: fine


def test_whole_folder_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "rep"
    with pytest.raises(RuntimeError, match="boom"):
        with guard.whole_folder(str(out), "report", []) as d:
            (d / "index.html").write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    for text in ("one", "two"):  # its own sealed folder is replaced
        with guard.whole_folder(str(out), "report", []) as d:
            (d / "index.html").write_text(text)
    assert (out / "index.html").read_text() == "two" and len(list(tmp_path.iterdir())) == 1


def test_never_an_input_or_what_holds_one(root):
    tmp, loc = root
    guard.mark_root(loc, "dataset")
    shard = str(tmp / "out" / "frames" / "identity=000001.parquet")
    for rel in ("frames", "frames/identity=000001.parquet"):
        with pytest.raises(guard.UnsafeDelete, match="an input of this command"):
            guard.guarded_delete(loc, rel, inputs=[shard])
    assert (tmp / "out" / "frames" / "identity=000001.parquet").exists()


@pytest.mark.parametrize("name", [".", "..", "../victim", "a/b", "", "-x", "a" * 200, "x..y"])
def test_names_must_be_plain(name):
    with pytest.raises(guard.BadName, match="not a plain name"):
        guard.check_name("run", name)


@pytest.mark.parametrize("name", ["teacher", "student-s0", "run_2.v1", "A1"])
def test_plain_names_pass(name):
    assert guard.check_name("run", name) == name


def test_contains_compares_real_paths(tmp_path):
    (tmp_path / "d" / "frames").mkdir(parents=True)
    assert guard.contains(str(tmp_path / "d"), str(tmp_path / "d" / "frames" / "release"))
    assert guard.contains(str(tmp_path), str(tmp_path / "d" / "."))
    assert not guard.contains(str(tmp_path / "d"), str(tmp_path / "dd"))
    assert guard.contains("s3://b/p", "s3://b/p/x") and not guard.contains("s3://b/p", "s3://b/px")
