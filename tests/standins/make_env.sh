#!/usr/bin/env bash
# Builds the stand-in model environment for the bridge tests: another interpreter with pins
# that conflict with pain3d's on purpose (numpy<2, torch 2.13 CPU) and what the stand-ins
# import (trimesh, xatlas, huggingface_hub, Pillow, ConfigArgParse), plus the bpy stand-in.
#   bash tests/standins/make_env.sh [DIR]   (default .venv-standin)
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${1:-.venv-standin}"
PY="${STANDIN_PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}"
if [ ! -x "$DIR/bin/python" ]; then
  "$PY" -m venv "$DIR"
fi
"$DIR/bin/python" -m pip install -q "numpy<2" torch==2.13.0 trimesh xatlas huggingface_hub \
  pillow configargparse 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
SITE="$("$DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp tests/standins/site/bpy.py "$SITE/bpy.py"
echo "stand-in model environment: $DIR ($("$DIR/bin/python" --version))"
