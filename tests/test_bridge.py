"""The model bridge (bridge/): a worker of another interpreter (the stand-in environment:
numpy<2, torch 2.13), started, health-checked, restarted once, timed out, and never left
running."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from bridge.client import BridgeError, ModelServer, WorkerSpec

FAULTS = str(Path(__file__).parent / "standins" / "fault_handler.py")


def spec(python, tmp_path, **options):
    return WorkerSpec(name="test.backend 'fault'", python=python, handler=FAULTS,
                      options=dict(options, marker_dir=str(tmp_path)), timeout_s=3.0,
                      start_timeout_s=30.0)


def gone(pid, within=10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_worker_runs_in_its_own_interpreter_and_keeps_the_protocol_clean(standin_python,
                                                                        tmp_path):
    with ModelServer(spec(standin_python, tmp_path)) as s:
        info = s.start()
        assert info["numpy"].startswith("1.")  # not pain3d's numpy 2
        assert info["health"]["pythonpath"] is None  # pain3d's paths do not leak in
        result, arrays = s.call({}, {"x": np.arange(4)})  # the model also prints to stdout
        assert result["pid"] == info["pid"]
        np.testing.assert_array_equal(arrays["y"], [0, 2, 4, 6])
        assert "printed by the model" in Path(s.log_path).read_text()
    assert gone(info["pid"])


def test_gpu_assignment_is_forwarded(standin_python, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with ModelServer(spec(standin_python, tmp_path)) as s:
        assert s.start()["health"]["cuda_visible_devices"] == "3"


def test_worker_that_dies_is_restarted_once_and_the_batch_retried(standin_python, tmp_path):
    with ModelServer(spec(standin_python, tmp_path)) as s:
        first = s.start()["pid"]
        result, arrays = s.call({"mode": "crash_once"}, {"x": np.ones(2)})
        assert result["pid"] != first and gone(first)
        np.testing.assert_array_equal(arrays["y"], [2, 2])
        assert s.call({}, {"x": np.ones(1)})[0]["pid"] == result["pid"]  # the new one stays


def test_second_death_stops_with_the_workers_last_lines(standin_python, tmp_path):
    s = ModelServer(spec(standin_python, tmp_path))
    s.start()
    with pytest.raises(BridgeError) as e:
        s.call({"mode": "crash"}, {"x": np.ones(1)})
    msg = str(e.value)
    assert "\n" not in msg and "died again" in msg and "exit code 4" in msg
    assert "CUDA out of memory (stand-in)" in msg and s.log_path in msg
    assert s.proc is None


def test_hanging_worker_times_out_in_one_sentence(standin_python, tmp_path):
    s = ModelServer(spec(standin_python, tmp_path))
    pid = s.start()["pid"]
    t = time.monotonic()
    with pytest.raises(BridgeError, match=r"no answer to 'call' within 3 s \(options.timeout_s\)"):
        s.call({"mode": "hang"}, {"x": np.ones(1)})
    assert time.monotonic() - t < 6 and gone(pid)


def test_hanging_start_times_out(standin_python, tmp_path):
    sp = spec(standin_python, tmp_path, hang_load=True)
    sp.start_timeout_s = 3.0
    with pytest.raises(BridgeError, match=r"within 3 s \(options.start_timeout_s\)"):
        ModelServer(sp).start()


def test_garbage_on_the_protocol_is_one_sentence(standin_python, tmp_path):
    s = ModelServer(spec(standin_python, tmp_path))
    pid = s.start()["pid"]
    with pytest.raises(BridgeError, match="not the bridge protocol.*this is not json"):
        s.call({"mode": "garbage"}, {"x": np.ones(1)})
    assert gone(pid)


def test_model_error_and_missing_model_code(standin_python, tmp_path):
    with ModelServer(spec(standin_python, tmp_path)) as s:
        s.start()
        with pytest.raises(BridgeError, match="the model failed .*refused this input"):
            s.call({"mode": "fail"}, {"x": np.ones(1)})
        assert s.call({}, {"x": np.ones(1)})[0]  # an error reply leaves the worker usable
    with pytest.raises(BridgeError, match=r"could not start \(probe\): ModuleNotFoundError: "
                                          "No module named 'no_such_model_code'"):
        ModelServer(spec(standin_python, tmp_path, fail_probe=True)).start()
    with pytest.raises(BridgeError, match="options.python '/nowhere/bin/python' is not an "
                                          "interpreter"):
        ModelServer(spec("/nowhere/bin/python", tmp_path)).start()


def test_no_orphans_after_close_or_a_killed_actor(standin_python, tmp_path):
    s = ModelServer(spec(standin_python, tmp_path))
    pid = s.start()["pid"]
    child = s.call({"mode": "child"})[0]["child"]  # a process the model started
    s.close()
    assert gone(pid) and gone(child)
    # the actor process is SIGKILLed (no close, no atexit): its worker notices and exits
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from bridge.client import ModelServer, WorkerSpec
        s = ModelServer(WorkerSpec(name="t", python={standin_python!r}, handler={FAULTS!r}))
        print(s.start()["pid"], flush=True)
        import time; time.sleep(3600)
        """)
    actor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(actor.stdout.readline())
    os.kill(actor.pid, signal.SIGKILL)
    actor.wait()
    assert gone(worker, within=10.0)


def test_interpreter_without_numpy_fails_at_start(tmp_path):
    env = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    with pytest.raises(BridgeError, match=r"exited during start \(exit code 1\); its last log "
                                          r"lines: .*No module named 'numpy'"):
        ModelServer(spec(str(env / "bin" / "python"), tmp_path)).start()


def test_death_is_seen_while_a_forked_child_holds_the_pipe(standin_python, tmp_path):
    sp = spec(standin_python, tmp_path)
    sp.timeout_s = 60.0
    with ModelServer(sp) as s:
        first = s.start()["pid"]
        t = time.monotonic()
        result, _ = s.call({"mode": "fork_die_once"}, {"x": np.ones(1)})
        assert result["pid"] != first and time.monotonic() - t < 15  # not the 60 s timeout


def test_shutdown_leaves_only_the_log(standin_python, tmp_path):
    s = ModelServer(spec(standin_python, tmp_path))
    s.start()
    s.call({}, {"x": np.ones(3)})
    (Path(s.work_dir) / "identity-1").mkdir()
    s.shutdown()
    assert [p.name for p in Path(s.work_dir).iterdir()] == ["worker.log"]


def test_reply_that_is_not_json_is_a_model_error_not_a_death(standin_python, tmp_path):
    with ModelServer(spec(standin_python, tmp_path)) as s:
        pid = s.start()["pid"]
        with pytest.raises(BridgeError, match="the model failed .*not JSON serializable"):
            s.call({"mode": "numpy_result"})
        assert s.call({}, {"x": np.ones(1)})[0]["pid"] == pid


def test_interpreter_that_cannot_be_executed(tmp_path):
    bad = tmp_path / "python"
    bad.write_text("not a program")
    bad.chmod(0o755)
    with pytest.raises(BridgeError, match="cannot be run .*Exec format error"):
        ModelServer(spec(str(bad), tmp_path)).start()
