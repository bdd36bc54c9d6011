"""Seeds derived from names, so that one draw never depends on which other draws a run makes.

``derive(seed, "rank", 1)`` and ``derive(seed + 1, "rank", 0)`` are unrelated streams (where
``seed + rank`` made them the same), and a model part seeded by ``(seed, part name)`` gets
the same initial weights whichever other parts the model has."""
from __future__ import annotations

import contextlib
import hashlib


def derive(seed: int, *names) -> int:
    """A 63-bit seed from ``seed`` and any names or numbers (stable across processes and
    Python versions: a hash of their text, not Python's salted ``hash``)."""
    text = "/".join(str(x) for x in (int(seed), *names))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


@contextlib.contextmanager
def part_seed(seed: int | None, name: str):
    """Inside: torch's CPU generator seeded by (seed, name); the outer stream is restored
    after. ``seed`` None: nothing changes (the caller's own global seeding applies)."""
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive(seed, "part", name))
        yield


def host() -> dict:
    """What a run's floating point depends on beyond its seed: ATen and oneDNN choose kernels
    by the CPU's instruction set (AVX-512 and AVX2 give slightly different sums), so the same
    seed reproduces bit for bit only on the same capability and torch version."""
    import platform

    import torch

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(), "torch": torch.__version__}
