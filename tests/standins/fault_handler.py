"""A bridge handler for the fault tests: echoes, crashes, hangs or writes garbage on request."""
import os
import sys
import time

import numpy as np


class Server:
    def __init__(self, options, work_dir):
        self.o = options
        self.dir = work_dir

    def probe(self):
        if self.o.get("fail_probe"):
            import no_such_model_code  # noqa: F401
        return {"pid": os.getpid()}

    def load(self):
        if self.o.get("hang_load"):
            time.sleep(3600)
        return {"loaded": True}

    def health(self):
        return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "pythonpath": os.environ.get("PYTHONPATH")}

    def call(self, args, arrays):
        mode = args.get("mode", "echo")
        if mode == "crash_once":
            marker = os.path.join(self.o["marker_dir"], "crashed")
            if not os.path.exists(marker):
                open(marker, "w").close()
                print("about to crash (first time)", file=sys.stderr, flush=True)
                os._exit(3)
        elif mode == "fork_die_once":  # dies, but a forked child still holds its stdout
            marker = os.path.join(self.o["marker_dir"], "forked")
            if not os.path.exists(marker):
                open(marker, "w").close()
                if os.fork() == 0:
                    time.sleep(3600)
                os._exit(5)
        elif mode == "crash":
            print("RuntimeError: CUDA out of memory (stand-in)", file=sys.stderr, flush=True)
            os._exit(4)
        elif mode == "hang":
            time.sleep(3600)
        elif mode == "garbage":
            import __main__
            os.write(__main__.PROTOCOL_OUT.fileno(), b"this is not json\n")
            time.sleep(3600)
        elif mode == "child":  # a process of the model's own, which must not outlive us
            import subprocess
            p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
            return {"child": p.pid}, {}
        elif mode == "numpy_result":  # not JSON: must come back as an error, not a death
            return {"value": np.float32(1.0)}, {}
        elif mode == "fail":
            raise ValueError("the stand-in model refused this input")
        print("printed by the model", flush=True)  # must not reach the protocol
        return {"pid": os.getpid()}, {"y": np.asarray(arrays["x"]) * 2}
