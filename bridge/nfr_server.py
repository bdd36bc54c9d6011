"""NFR's side of the bridge (runs in NFR's environment: Python 3.9, torch 1.12, CUDA).

Drives the repository's own functions in the order its ``test_user.py`` runs them:

1. ``FWH_args.test_parser().parse_args(["-c", config/test.yml, ...])`` with the data
   bundle's folders given as overrides (``--data_dir``, ``--save_dir``, ``--std_file``,
   ``--img_file``, ``--wks_std_file``, ``--load_head``, ``--resume_id``);
2. ``myutils.Normalizer(args.std_file)``, ``myutils.Normalizer_img(args.img_file)``,
   ``myutils.renderer(view_d=2.5, img_size=256, fragments=True)``;
3. per mesh: ``trimesh.load(mesh_file, process=True, maintain_order=True)`` then
   ``test_user.load_mesh(mesh, renderer, scale, shift, img_normalizer=..., img_path=...)``
   (largest connected piece, degenerate triangles dropped, scaled, shifted);
4. once: ``test_user.model_loading(args, dfn_info)`` (the experiment checkpoint);
5. per code vector: ``z = zeros(1, args.feat_dim)``, ``z[0, :53] = codes``, then
   ``test_user.calc_new_mesh(args, normalizer, model, deformation_gradient.apply, mesh, z,
   operators, dfn_info, img=img)``; its output is mean-centred.

Replies carry the mesh NFR rigged (``rig_input``, ``rig_faces``: after its preprocessing)
and one output per code row (``vertices``); pain3d maps them back onto its own vertices.
"""
from __future__ import annotations

import os
import sys

import numpy as np

BUNDLE_FILES = ("data/ICT_live_100/gradients_std.npy", "data/MF_all_v5/img_stat.pkl")


def checkpoint_path(bundle: str, load_head: str, resume_id) -> str:
    return os.path.join(bundle, "experiments", load_head, "%s_%s.pth" % (load_head, resume_id))


class Server:
    def __init__(self, options: dict, work_dir: str):
        self.o = options
        self.repo = os.path.abspath(options["repo"])
        self.bundle = os.path.abspath(options["bundle"])
        self.model = None

    def probe(self) -> dict:
        try:
            os.chdir(self.repo)  # NFR finds diffusion-net and ICT-FaceKit relative to its root
            sys.path.insert(0, self.repo)
            import test_user
        except (ImportError, OSError) as e:
            raise ImportError("cannot import NFR's test_user.py from %s (%s: %s): point "
                              "options.repo at your NFR_pytorch clone and options.python at "
                              "the environment its README builds" % (self.repo,
                                                                     type(e).__name__, e))
        self.tu = test_user
        cfg = os.path.join(self.repo, self.o.get("config", "config/test.yml"))
        need = [cfg] + [os.path.join(self.bundle, f) for f in BUNDLE_FILES]
        need.append(checkpoint_path(self.bundle, self.o["load_head"], self.o["resume_id"]))
        missing = [p for p in need if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError("NFR needs %s" % ", ".join(missing))
        import torch

        return {"repo": self.repo, "torch": torch.__version__, "cuda": torch.cuda.is_available()}

    def load(self) -> dict:
        import torch
        import myutils
        from deformation_transfer import deformation_gradient

        d = self.bundle
        self.args = self.tu.test_parser().parse_args([
            "-c", os.path.join(self.repo, self.o.get("config", "config/test.yml")),
            "--data_dir", os.path.join(d, "data"), "--save_dir", os.path.join(d, "experiments"),
            "--std_file", os.path.join(d, "data/ICT_live_100"),
            "--img_file", os.path.join(d, "data/MF_all_v5"),
            "--wks_std_file", os.path.join(d, "data/ICT_live_100"),
            "--load_head", self.o["load_head"], "--resume_id", str(self.o["resume_id"])])
        self.normalizer = myutils.Normalizer(self.args.std_file, self.args.device)
        self.img_normalizer = myutils.Normalizer_img(self.args.img_file, self.args.device)
        self.renderer = myutils.renderer(view_d=2.5, img_size=256, fragments=True)
        self.myfunc = deformation_gradient.apply
        # a missing or corrupt checkpoint fails here, at start-up, not at the first identity
        torch.load(checkpoint_path(d, self.o["load_head"], self.o["resume_id"]),
                   map_location="cpu")
        return {"feat_dim": self.args.feat_dim}

    def health(self) -> dict:
        import torch

        return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "cuda": torch.cuda.is_available(),
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}

    def call(self, args: dict, arrays: dict):
        import torch
        import trimesh

        mesh_file = args["mesh"]
        mesh = trimesh.load(mesh_file, process=True, maintain_order=True)
        mesh, ops, dfn_info, img = self.tu.load_mesh(
            mesh, self.renderer, float(self.o["scale"]), np.array(self.o["shift"], np.float64),
            img_normalizer=self.img_normalizer, img_path=mesh_file.replace(".obj", "_img.npy"))
        if self.model is None:
            self.model = self.tu.model_loading(self.args, dfn_info)
        device = next(self.model.parameters()).device
        out = []
        for codes in np.asarray(arrays["codes"], np.float32):
            z = torch.zeros((1, self.args.feat_dim))
            z[0, :53] = torch.from_numpy(codes)
            mesh_out = self.tu.calc_new_mesh(self.args, self.normalizer, self.model, self.myfunc,
                                             mesh, z.to(device), ops, dfn_info, img=img)[0]
            out.append(np.asarray(mesh_out.vertices, np.float32))
        return ({"codes": len(out)},
                {"rig_input": np.asarray(mesh.vertices, np.float32),
                 "rig_faces": np.asarray(mesh.faces, np.int64), "vertices": np.stack(out)})
