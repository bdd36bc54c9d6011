"""Stand-in for diffusion-net (found only through NFR's cwd-relative sys.path entry)."""
import numpy as np


def get_all_operators(verts, faces, k_eig=128, op_cache_dir=None):
    n = verts.shape[1]
    mass = np.ones((1, n), np.float32) / n
    return [verts], [mass], [None], [None], [None], [None], [None]
