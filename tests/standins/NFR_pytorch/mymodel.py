"""Stand-in of NFR's mymodel.latent_space: same constructor, img_feat / update_precomputes /
decode entry points; the "decoder" is a fixed deformation, not a network.

Each of the 53 ICT codes moves the vertices within ``RADIUS`` (a fraction of the bounding
box diagonal) of its own vertex on the front of the face (``code_centres``) straight down;
every vertex also drifts a little by a smooth function of its position, so the output at
code 0 is not the input (as with the real network).
"""
import numpy as np
import torch
import torch.nn as nn

CODES = ['browDown_L', 'browDown_R', 'browInnerUp_L', 'browInnerUp_R', 'browOuterUp_L',
         'browOuterUp_R', 'cheekPuff_L', 'cheekPuff_R', 'cheekSquint_L', 'cheekSquint_R',
         'eyeBlink_L', 'eyeBlink_R', 'eyeLookDown_L', 'eyeLookDown_R', 'eyeLookIn_L',
         'eyeLookIn_R', 'eyeLookOut_L', 'eyeLookOut_R', 'eyeLookUp_L', 'eyeLookUp_R',
         'eyeSquint_L', 'eyeSquint_R', 'eyeWide_L', 'eyeWide_R', 'jawForward', 'jawLeft',
         'jawOpen', 'jawRight', 'mouthClose', 'mouthDimple_L', 'mouthDimple_R', 'mouthFrown_L',
         'mouthFrown_R', 'mouthFunnel', 'mouthLeft', 'mouthLowerDown_L', 'mouthLowerDown_R',
         'mouthPress_L', 'mouthPress_R', 'mouthPucker', 'mouthRight', 'mouthRollLower',
         'mouthRollUpper', 'mouthShrugLower', 'mouthShrugUpper', 'mouthSmile_L',
         'mouthSmile_R', 'mouthStretch_L', 'mouthStretch_R', 'mouthUpperUp_L',
         'mouthUpperUp_R', 'noseSneer_L', 'noseSneer_R']
HEIGHT = {'brow': 0.80, 'eye': 0.66, 'cheek': 0.50, 'nose': 0.55, 'mouth': 0.30, 'jaw': 0.15}
RADIUS = 0.08  # of the bounding-box diagonal
STEP = 0.03  # downward motion at code 1, of the bounding-box height
DRIFT = 0.002  # of the diagonal


def code_centres(v):
    lo, hi = v.min(0), v.max(0)
    out = []
    for name in CODES:
        side = 0.35 if name.endswith('_L') else 0.65 if name.endswith('_R') else 0.5
        height = next(h for fam, h in HEIGHT.items() if name.startswith(fam))
        target = lo + (hi - lo) * np.array([side, height, 1.0])
        out.append(v[np.linalg.norm(v - target, axis=1).argmin()])  # on the surface
    return np.array(out)


def code_weights(v, codes):
    """(n_vertices,) motion weight of each code, summed: zero outside every active region."""
    v = np.asarray(v, np.float64)
    diag = np.linalg.norm(v.max(0) - v.min(0))
    w = np.zeros((len(v), len(CODES)))
    for k, c in enumerate(code_centres(v)):
        if codes[k] != 0:
            d = np.linalg.norm(v - c, axis=1) / (RADIUS * diag)
            w[:, k] = np.clip(1 - d ** 2, 0, None) ** 2
    return w


def deform(v, codes):
    v = np.asarray(v, np.float64)
    lo, hi = v.min(0), v.max(0)
    diag = np.linalg.norm(hi - lo)
    out = v.copy()
    out[:, 2] += DRIFT * diag * np.sin(7 * (v[:, 0] - lo[0]) / (hi[0] - lo[0]))
    out[:, 1] -= STEP * (hi[1] - lo[1]) * (code_weights(v, codes) @ np.asarray(codes, np.float64))
    return out


class _Encoder(nn.Module):
    def update_precomputes(self, pre_computes):
        self.pre_computes = pre_computes


class latent_space(nn.Module):
    def __init__(self, gn_in, in_shape, out_shape, pre_computes=None, hid_shape=128,
                 latent_shape=32, global_pn_shape=None, dfn_blocks=4, iden_blocks=4,
                 non_linear='relu', residual=False, global_pn=False, sampling=0, number_gn=32,
                 img_encoder=False, img_feat=32, img_only_mlp=False, img_warp=False,
                 global_encoder_grad=True, iden_encoder_grad=True):
        super(latent_space, self).__init__()
        self.latent_shape = latent_shape
        self.img_feat_dim = img_feat
        self.gain = nn.Parameter(torch.ones(1))  # the checkpoint's one weight
        self.encoder = _Encoder()
        self.global_pn = _Encoder() if global_pn else None
        self.update_precomputes(pre_computes)

    def update_precomputes(self, dfn_info):
        self.encoder.update_precomputes(dfn_info)
        if self.global_pn is not None:
            self.global_pn.update_precomputes(dfn_info)

    def img_feat(self, img):
        return torch.zeros((img.shape[0], self.img_feat_dim), device=img.device)

    def decode(self, x_f, latent, x_f_orig=None, x_v_orig=None, source_img=None):
        x_faces, x_source_v = x_f
        if latent.shape[1] != self.latent_shape:
            raise ValueError(f"latent of width {latent.shape[1]}, expected {self.latent_shape}")
        v = x_source_v[0, :, :3].cpu().numpy()
        codes = latent[0, :53].cpu().numpy() * float(self.gain)
        out = torch.from_numpy(deform(v, codes)).float().unsqueeze(0).to(x_source_v.device)
        return out, None
