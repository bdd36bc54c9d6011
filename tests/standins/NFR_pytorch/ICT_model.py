"""Stand-in of NFR's ICT_model (imported by test_user; not used for rigging a target)."""
import sys

sys.path.append('./third_party/ICT-FaceKit/Scripts/')


class ICT_model:
    @staticmethod
    def load(type=1):
        raise RuntimeError("the stand-in has no ICT face model")
