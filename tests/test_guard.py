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


def test_the_root_itself_only_when_pain3d_created_it(root):
    tmp, loc = root
    guard.mark_root(loc, "dataset")  # a folder pain3d writes into, not one it created whole
    with pytest.raises(guard.UnsafeDelete, match="as a whole"):
        guard.guarded_delete(loc, "")
    assert (tmp / "out" / "frames").exists()
    (tmp / "out" / guard.MARKER).unlink()
    guard.mark_root(loc, "export", owns_root=True)
    guard.guarded_delete(loc, "")
    assert not (tmp / "out").exists()


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
