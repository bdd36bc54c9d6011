"""Which EGL device renders on a GPU node: the one that is this worker's CUDA GPU.

EGL enumerates every GPU of the machine whatever CUDA_VISIBLE_DEVICES says, so "EGL device
0" is not "the GPU Ray gave us". The match is made by PCI address: the EGL device's DRM node
(/dev/dri/cardN -> /sys/class/drm/cardN/device) against the visible CUDA device's bus id
(nvidia-smi, which lists physical GPUs). Without a match (no NVIDIA EGL, no nvidia-smi) the
caller keeps the default display, and the renderer logs the GL renderer string it got.
"""
from __future__ import annotations

import ctypes
import logging
import os
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

SYSFS_DRM = "/sys/class/drm"
EGL_EXTENSIONS = 0x3055
EGL_DRM_DEVICE_FILE_EXT = 0x3233


@dataclass
class EglDevice:
    index: int  # as moderngl's device_index counts (eglQueryDevicesEXT order)
    extensions: str
    drm_file: str | None  # /dev/dri/cardN; None for Mesa's software device

    @property
    def pci(self) -> str | None:
        if not self.drm_file:
            return None
        path = os.path.realpath(os.path.join(SYSFS_DRM, os.path.basename(self.drm_file),
                                             "device"))
        return normalise_pci(os.path.basename(path)) if os.path.exists(path) else None


def normalise_pci(bus_id: str) -> str:
    """'00000000:3B:00.0' (nvidia-smi) and '0000:3b:00.0' (sysfs) -> '0000:3b:00.0'."""
    dom, rest = bus_id.strip().lower().split(":", 1)
    return f"{int(dom, 16):04x}:{rest}"


def egl_devices() -> list[EglDevice]:
    """The EGL devices (EGL_EXT_device_enumeration), empty where libEGL lacks it."""
    try:
        egl = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return []
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    query, string = (egl.eglGetProcAddress(n) for n in (b"eglQueryDevicesEXT",
                                                        b"eglQueryDeviceStringEXT"))
    if not query or not string:
        return []
    devices_fn = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                                  ctypes.POINTER(ctypes.c_int))(query)
    string_fn = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int)(string)
    n = ctypes.c_int()
    if not devices_fn(0, None, ctypes.byref(n)) or n.value < 1:
        return []
    handles = (ctypes.c_void_p * n.value)()
    devices_fn(n.value, handles, ctypes.byref(n))
    out = []
    for i, h in enumerate(handles[: n.value]):
        ext = (string_fn(h, EGL_EXTENSIONS) or b"").decode()
        drm = string_fn(h, EGL_DRM_DEVICE_FILE_EXT) if "drm" in ext else None
        out.append(EglDevice(i, ext, drm.decode() if drm else None))
    return out


def visible_gpu_pci(visible: str | None = None) -> str | None:
    """PCI address of the first GPU in CUDA_VISIBLE_DEVICES (an index or a UUID)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    first = (visible or "").split(",")[0].strip()
    if not first:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=pci.bus_id", "--format=csv,noheader",
                              "-i", first], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()
    return normalise_pci(line[0]) if out.returncode == 0 and line else None


def device_for_pci(pci: str | None, devices: list[EglDevice]) -> int | None:
    """The EGL device index at PCI address ``pci``; None if there is none."""
    if pci is None:
        return None
    for d in devices:
        if d.pci == normalise_pci(pci):
            return d.index
    return None


def egl_device_for_cuda() -> int | None:
    """The EGL device of this process's (first) visible CUDA GPU, or None (default display)."""
    pci = visible_gpu_pci()
    devices = egl_devices() if pci else []
    index = device_for_pci(pci, devices)
    if pci and index is None:
        log.warning("no EGL device at the PCI address of CUDA GPU %s (%s) among %d EGL devices; "
                    "rendering on the default display", os.environ.get("CUDA_VISIBLE_DEVICES"),
                    pci, len(devices))
    elif index is not None:
        log.info("EGL device %d is CUDA GPU %s (PCI %s)", index,
                 os.environ.get("CUDA_VISIBLE_DEVICES"), pci)
    return index
