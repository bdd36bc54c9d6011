"""Stand-in of the real torchvision compatibility patch (demo.py applies it first)."""
APPLIED = []


def apply_fix():
    APPLIED.append(True)
