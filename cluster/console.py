"""What a person sees: one-line errors through Ray's wrappers, Ctrl-C / SIGTERM as a clean
exit 130, and Ray's own chatter kept in a log file unless ``-v`` is given."""
from __future__ import annotations

import logging
import os
import re
import signal
import sys
import tempfile
import time

from cluster.validate import ConfigError
from pipelines.storage import errno_sentence

INTERRUPTED_EXIT = 130
USER_ERRORS = (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError,
               PermissionError, IsADirectoryError, OSError)
_USER_ERROR_NAMES = {t.__name__ for t in USER_ERRORS} | {
    "StorageError", "OutputConflict", "ModuleNotFoundError", "ImportError", "KeyError",
    "CorruptImage", "SweepExists", "UnsafeDelete", "BadName", "RunExists", "BridgeError",
    "OptionsError"}
_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+): (.+)$")
# Ray's loggers; their warnings (placement-group cleaners, deprecations, ...) go to the file
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.util", "ray.air")


def user_error(e: BaseException) -> str | None:
    """The user's problem behind an exception, through Ray's wrappers: a stage that failed on
    a worker arrives as RayTaskError / UserCodeException with the real error as its cause, or
    (an actor that could not start) as ActorDiedError whose message holds the traceback; a
    failed training run as WorkerGroupError (the workers' exceptions) or ControllerError."""
    seen = set()
    ray_text = []
    todo = [e]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if not type(e).__module__.startswith("ray.") and isinstance(e, USER_ERRORS):
            text = str(e).strip()
            return errno_sentence(text.splitlines()[0], e) if text else type(e).__name__
        ray_text.append(str(e))
        todo.append(getattr(e, "cause", None) or e.__cause__)
        todo.extend((getattr(e, "worker_failures", None) or {}).values())
        todo.append(getattr(e, "controller_failure", None))
    for text in ray_text:
        for line in reversed(text.splitlines()):
            m = _ERROR_LINE.match(line.strip())
            if m and m.group(1) in _USER_ERROR_NAMES:
                return errno_sentence(m.group(2))
    return None


def was_interrupted(e: BaseException) -> bool:
    """True when a Ctrl-C / SIGTERM is behind ``e``: Python 3.11 wraps a KeyboardInterrupt
    raised while a class is being built (a signal landing mid-import) in a RuntimeError."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _sigterm(signum, frame):
    """SIGTERM acts as Ctrl-C: whatever handles SIGINT now (Tune's graceful stop during a
    sweep, Python's KeyboardInterrupt otherwise) handles it."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """Called at start-up and again after ``ray.init``, which installs a SIGTERM handler of
    its own (``sys.exit``) in the driver."""
    signal.signal(signal.SIGTERM, _sigterm)


_AGAIN = {"generate": "re-run the same command to resume",
          "train": "re-run the same command with --resume to resume",
          "tune": "re-run the same command with --resume to resume",
          "ablate": "its finished runs are kept; re-run it with another --name to start over"}


def interrupted_line(command: str, e: BaseException | None = None) -> str:
    """The line after Ctrl-C; no resume advice when the command kept nothing to resume
    (it marks its exception ``pain3d_nothing_kept``)."""
    if e is not None and _nothing_kept(e):
        return "pain3d: interrupted; nothing was kept, so run the command again to start over"
    again = _AGAIN.get(command)
    return f"pain3d: interrupted; {again}" if again else "pain3d: interrupted"


def _nothing_kept(e: BaseException) -> bool:
    seen = set()
    while e is not None and id(e) not in seen:
        if getattr(e, "pain3d_nothing_kept", False):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def log_file(command: str) -> str:
    folder = os.environ.get("PAIN3D_LOG_DIR") or os.path.join(tempfile.gettempdir(),
                                                              "pain3d-logs")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")


_LOG_FILE: str | None = None


def setup_logging(command: str, verbose: bool) -> str | None:
    """Our warnings on stderr; Ray's own loggers to a file (returned) unless ``verbose``."""
    global _LOG_FILE
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    _LOG_FILE = None if verbose else log_file(command)
    quiet_ray_loggers()
    return _LOG_FILE


def redirect_native_stderr() -> None:
    """Before Ray starts: file descriptor 2 (where Ray's C++ core worker and the processes
    it starts write) goes to the log file, while Python's ``sys.stderr`` (our progress bars,
    errors, tracebacks of real bugs) keeps the terminal. Exceptions that Python can only
    report as "ignored" (Ray Data's iterators finalised at exit) go to the log file too."""
    if _LOG_FILE is None or getattr(redirect_native_stderr, "done", False):
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    log_fd = os.open(_LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stderr = os.fdopen(terminal, "w", buffering=1)
    sys.unraisablehook = _log_unraisable
    redirect_native_stderr.done = True


def _log_unraisable(u) -> None:
    logging.getLogger("pain3d.unraisable").warning(
        "%s in %r", u.exc_type.__name__, u.object,
        exc_info=(u.exc_type, u.exc_value, u.exc_traceback))


def _route_raylet_messages() -> None:
    """Ray's driver prints the raylet's messages (e.g. "N worker processes have been
    started") to stdout whatever log_to_driver says; they go to the log file instead."""
    worker = sys.modules.get("ray._private.worker")
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "pain3d", False):
        return

    def to_log(data, ignore_prefix=False):
        if data.get("pid") == "raylet":
            for line in data.get("lines", []):
                logging.getLogger("ray").warning("(raylet) %s", line)
        else:
            original(data, ignore_prefix=ignore_prefix)

    to_log.pain3d = True
    worker.print_to_stdstream = to_log


def quiet_ray_loggers() -> None:
    """Sends Ray's driver-side loggers to the log file (again after ``ray.init``, which
    configures them anew)."""
    if _LOG_FILE is None:
        return
    handler = logging.FileHandler(_LOG_FILE, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _route_raylet_messages()
    for name in RAY_LOGGERS + ("pain3d.unraisable",):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
            if isinstance(h, logging.FileHandler):
                h.close()
        lg.addHandler(handler)
        lg.propagate = False
