#!/usr/bin/env bash
# Builds the environment of a model that runs behind pain3d's model bridge, on one node,
# from your clone of the model's repository, and fills its weights folder. Run it on every
# node that runs the stage (or once on shared storage mounted at the same path everywhere).
#
#   bash scripts/setup_model_env.sh nfr       NFR_CLONE       ENV_DIR  BUNDLE_DIR
#   bash scripts/setup_model_env.sh hunyuan3d HUNYUAN3D_CLONE ENV_DIR  MODEL_DIR
#
# Then point the config at them (configs/paper.yaml):
#   generate.stages.rigging:   model: BUNDLE_DIR, options: {python: ENV_DIR/bin/python, repo: NFR_CLONE}
#   generate.stages.texturing: model: MODEL_DIR,  options: {python: ENV_DIR/bin/python, repo: HUNYUAN3D_CLONE}
# and run `pain3d check --config ...`, which starts each worker once and imports its code.
#
# The steps follow each repository's README (NFR: conda, Python 3.9, torch 1.12.1,
# pytorch3d 0.7.1, cupy 11.3; Hunyuan3D 2.1: Python 3.10, torch 2.5.1+cu124, its
# requirements.txt with bpy 4.0, the custom rasteriser and the mesh painter). They need a
# CUDA node and the internet, and were not run on pain3d's CI machine.
set -euo pipefail
what="${1:?nfr or hunyuan3d}"; clone="${2:?the repository clone}"; env="${3:?env folder}"
models="${4:?the weights folder}"
clone="$(cd "$clone" && pwd)"
say() { echo "[setup $what] $*"; }

case "$what" in
nfr)
  [ -f "$clone/test_user.py" ] || { echo "$clone is not an NFR_pytorch clone (no test_user.py)"; exit 2; }
  say "conda environment $env (Python 3.9; the packages of NFR's README)"
  conda create -y -p "$env" python=3.9
  conda install -y -p "$env" -c pytorch -c conda-forge -c pyg -c pytorch3d \
    pytorch=1.12.1 cudatoolkit=11.3 pytorch-sparse=0.6.15 pytorch3d=0.7.1 cupy=11.3 numpy=1.23.5
  "$env/bin/pip" install potpourri3d trimesh open3d transforms3d libigl robust_laplacian vedo \
    configargparse
  say "data bundle $models: unpack the authors' download (Google Drive link in NFR's README)"
  say "there, so that it holds data/ICT_live_100, data/MF_all_v5 and experiments/"
  for f in data/ICT_live_100/gradients_std.npy data/MF_all_v5/img_stat.pkl \
           experiments/ICT_augment_cnn_ext_dfn4_grad/ICT_augment_cnn_ext_dfn4_grad_0.pth; do
    [ -e "$models/$f" ] && say "found $f" || say "MISSING $models/$f"
  done
  ;;
hunyuan3d)
  [ -f "$clone/hy3dpaint/textureGenPipeline.py" ] || { echo "$clone is not a Hunyuan3D-2.1 clone"; exit 2; }
  say "virtual environment $env (Python 3.10; the packages of Hunyuan3D 2.1's README)"
  python3.10 -m venv "$env"
  "$env/bin/pip" install torch==2.5.1 torchvision==0.20.1 torchaudio==2.5.1 \
    --index-url https://download.pytorch.org/whl/cu124
  "$env/bin/pip" install -r "$clone/requirements.txt"
  (cd "$clone/hy3dpaint/custom_rasterizer" && "$env/bin/pip" install -e .)
  (cd "$clone/hy3dpaint/DifferentiableRenderer" && PATH="$env/bin:$PATH" bash compile_mesh_painter.sh)
  say "weights into $models (hub cache under $models/hub; nothing is downloaded at run time)"
  HF_HOME="$models" "$env/bin/huggingface-cli" download tencent/Hunyuan3D-2.1 \
    --include "hunyuan3d-paintpbr-v2-1/*"
  HF_HOME="$models" "$env/bin/huggingface-cli" download facebook/dinov2-giant
  mkdir -p "$models/ckpt"
  wget -q -O "$models/ckpt/RealESRGAN_x4plus.pth" \
    https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth
  ;;
*) echo "unknown model $what: use nfr or hunyuan3d"; exit 2 ;;
esac
say "done: options.python = $env/bin/python, options.repo = $clone, model = $models"
