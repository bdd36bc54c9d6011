"""Stand-in of NFR's test_user.py: the functions pain3d's worker calls, same names and
arguments, and the same module-level imports (so a wrong cwd fails as the real one does).
The real script puts every tensor on 'cuda'; the stand-in uses the CPU when there is none."""
import warnings
warnings.filterwarnings("ignore", category=PendingDeprecationWarning)

from mymodel import latent_space  # noqa: E402
from FWH_args import test_parser  # noqa: E402,F401
import myutils  # noqa: E402
from deformation_transfer import Mesh, Transfer, deformation_gradient  # noqa: E402,F401
from data_loader import load_data_mf_v3, load_data_ict_live  # noqa: E402,F401
from ICT_model import ICT_model  # noqa: E402,F401

import trimesh  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import os  # noqa: E402
from copy import deepcopy  # noqa: E402

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
from mymodel import CODES as expression_bases  # noqa: E402,F401


def render_img(mesh, renderer, img_normalizer, img_enc='cnn', img_path=''):
    img, _ = renderer.renderbatch([torch.from_numpy(np.asarray(mesh.vertices)).float()],
                                  [torch.from_numpy(np.asarray(mesh.faces))], reverse=True)
    img = img_normalizer.normalize(img)
    np.save(img_path, img.cpu().numpy())
    return img


def get_mesh_operators(mesh):
    transf = Transfer(mesh, deepcopy(mesh))
    return None, None, None, np.zeros((transf.n_vertices, 3))


def load_mesh(mesh, renderer, scale, shift, device='cuda', use_img=True, process=True,
              img_normalizer=None, img_path=''):
    mesh = deepcopy(mesh)
    if process:
        mesh = myutils.get_biggest_connected(mesh)
        mesh = myutils.remove_degenerated_triangles(mesh)
        mesh = trimesh.Trimesh(mesh.vertices, mesh.faces)
    mesh.vertices *= scale
    mesh.vertices += shift
    mesh.vertices = mesh.vertices.astype(np.float32)
    mesh_operators = get_mesh_operators(mesh)
    mesh_dfn_info = myutils.get_dfn_info(mesh)
    img = render_img(mesh, renderer, img_normalizer, img_path=img_path)
    return mesh, mesh_operators, mesh_dfn_info, img.to(DEVICE)


def model_loading(args, dfn_info):
    model = latent_space(6, in_shape=6, out_shape=9, pre_computes=dfn_info,
                         latent_shape=args.feat_dim, iden_blocks=args.iden_blocks,
                         hid_shape=args.mlp_hid_channel, global_pn=args.global_pn,
                         dfn_blocks=args.dfn_blocks, global_pn_shape=args.global_pn_shape,
                         img_encoder=args.img_enc, img_feat=args.img_feat)
    ckpt = torch.load(os.path.join(args.save_dir, args.load_head,
                                   args.load_head + f'_{args.resume_id}.pth'), map_location=DEVICE)
    model = myutils.load_state_dict(model, ckpt['model'])
    if model.global_pn is not None:
        model.global_pn.update_precomputes(dfn_info)
    model.float()
    model.to(DEVICE)
    return model


def calc_new_mesh(args, normalizer, model, myfunc, mesh, z, operators, dfn_info, img=None):
    lu_solver, idxs, vals, rhs = operators
    inputs = torch.from_numpy(myutils.calc_cent(mesh)).float().unsqueeze(0).to(DEVICE)
    input_source_v = torch.from_numpy(np.asarray(mesh.vertices)).float().unsqueeze(0).to(DEVICE)
    model.img_feat(img)
    with torch.no_grad():
        model.update_precomputes(dfn_info)
        g_pred, z_iden = model.decode([inputs, input_source_v], z.float())
        g_pred = normalizer.inv_normalize(g_pred)
        out_pred = myfunc(g_pred, lu_solver, idxs, vals, rhs.shape)
        out_pred = out_pred - out_pred.mean(axis=[0, 1], keepdim=True)
        mesh_out = Mesh(out_pred[0].detach().cpu().numpy(), mesh.faces)
    return mesh_out, None, None, None, z_iden


if __name__ == '__main__':
    raise SystemExit("the stand-in has no interactive viewer")
