"""Stand-in of NFR's myutils (numpy in place of open3d / igl / pytorch3d)."""
import os
import pickle
import sys

import numpy as np
import torch

sys.path.append('./third_party/diffusion-net/src')  # cwd-relative, as in the real module
import diffusion_net  # noqa: E402


class Mesh:
    def __init__(self, vertices, faces):
        self.vertices = np.asarray(vertices)
        self.faces = np.asarray(faces)


def calc_cent(mesh):
    return mesh.vertices[mesh.faces].mean(axis=-2)


def get_biggest_connected(mesh):
    """Keeps the triangles of the largest connected piece (vertices are kept, as open3d's
    remove_triangles_by_mask does; trimesh drops the unreferenced ones later)."""
    f = np.asarray(mesh.faces)
    parent = np.arange(len(mesh.vertices))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for a, b, c in f:
        ra, rb, rc = root(a), root(b), root(c)
        parent[rb] = ra
        parent[root(rc)] = ra
    tri_root = np.array([root(a) for a in f[:, 0]])
    labels, counts = np.unique(tri_root, return_counts=True)
    keep = tri_root == labels[counts.argmax()]
    return Mesh(np.asarray(mesh.vertices), f[keep])


def remove_degenerated_triangles(mesh):
    f = np.asarray(mesh.faces)
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return Mesh(mesh.vertices, f[ok])


class Normalizer(object):
    def __init__(self, std_path, device, zero_mean=True):
        self.gradients_std = torch.from_numpy(np.load(os.path.join(std_path, 'gradients_std.npy')))

    def inv_normalize(self, tensor):
        return tensor


class Normalizer_img(Normalizer):
    def __init__(self, std_path, device):
        with open(os.path.join(std_path, 'img_stat.pkl'), 'rb') as f:
            self.gradients_mean, self.gradients_std = pickle.load(f).values()

    def normalize(self, tensor):
        return (tensor - float(self.gradients_mean)) / float(self.gradients_std)


class renderer:
    """A depth image of the mesh seen from the front (orthographic, nearest vertex)."""

    def __init__(self, view_d=6, img_size=1024, fragments=False):
        self.img_size = img_size

    def renderbatch(self, vertices, faces, reverse=False):
        v = vertices[0].cpu().numpy()
        s = self.img_size
        lo, hi = v[:, :2].min(0), v[:, :2].max(0)
        px = ((v[:, :2] - lo) / np.maximum(hi - lo, 1e-9) * (s - 1)).astype(int)
        img = np.zeros((1, s, s, 3), np.float32)
        img[0, s - 1 - px[:, 1], px[:, 0]] = v[:, 2:3]
        return torch.from_numpy(img), None


def get_dfn_info(mesh, cache_dir=None, map_location='cuda'):
    v = torch.from_numpy(np.asarray(mesh.vertices)).unsqueeze(0).float()
    f = torch.from_numpy(np.asarray(mesh.faces)).unsqueeze(0).long()
    frames, mass, L, evals, evecs, gx, gy = diffusion_net.get_all_operators(v, f, k_eig=128)
    return [mass[0], frames[0][0], torch.from_numpy(np.asarray(mesh.faces))]


def load_state_dict(model, state_dict):
    model.load_state_dict(state_dict)
    return model
