"""Demographic groups, identity sampling (balanced or matching a given table) and prompts."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AGE_GROUPS = ("young", "elderly")
GENDERS = ("man", "woman")
ETHNICITIES = ("Latino", "White", "South Asian", "Black", "Middle Eastern", "East Asian")

# The 3DPain paper's Table 1 (2,500 identities): far from balanced.
PAPER_TABLE = {
    "age_group": {"young": 1563, "elderly": 937},
    "gender": {"man": 1723, "woman": 777},
    "ethnicity": {"Latino": 646, "White": 460, "South Asian": 469, "Black": 82,
                  "Middle Eastern": 585, "East Asian": 258},
}
_CHOICES = {"age_group": AGE_GROUPS, "gender": GENDERS, "ethnicity": ETHNICITIES}


@dataclass(frozen=True)
class Demographics:
    age_group: str
    gender: str
    ethnicity: str

    def __post_init__(self):
        for k, allowed in _CHOICES.items():
            if getattr(self, k) not in allowed:
                raise ValueError(f"unknown {k} {getattr(self, k)!r}; choose from {list(allowed)}")


@dataclass
class DemographicsConfig:
    """``balanced``: every block of 24 consecutive identities holds each (age, gender,
    ethnicity) cell once. ``table``: each attribute follows the given counts exactly over
    a population of their total (the paper's Table 1 by default)."""

    mode: str = "balanced"
    table: dict[str, dict[str, int]] = field(default_factory=lambda: PAPER_TABLE)


def identity_rng(seed: int, identity: int, stream: str) -> np.random.Generator:
    """An identity's random stream depends only on (seed, identity, purpose)."""
    tag = int.from_bytes(stream.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng([int(seed), int(identity), tag])


def _cells() -> list[tuple[str, str, str]]:
    return [(a, g, e) for a in AGE_GROUPS for g in GENDERS for e in ETHNICITIES]


def sample_demographics(identity: int, seed: int, cfg: DemographicsConfig | None = None
                        ) -> Demographics:
    cfg = cfg or DemographicsConfig()
    if cfg.mode == "balanced":
        cells = _cells()
        block, pos = divmod(int(identity), len(cells))
        perm = np.random.default_rng([int(seed), block, 17]).permutation(len(cells))
        return Demographics(*cells[perm[pos]])
    if cfg.mode == "table":
        out = {}
        for attr, counts in cfg.table.items():
            if attr not in _CHOICES:
                raise ValueError(f"demographics table has unknown attribute {attr!r}")
            if any(int(c) < 0 for c in counts.values()) or sum(counts.values()) <= 0:
                raise ValueError(f"demographics table counts for {attr!r} must be >= 0 "
                                 "with a positive total")
            labels = np.repeat(list(counts), [int(c) for c in counts.values()])
            # A seeded permutation over the table's population: exact counts for the first
            # `total` identities, and each identity's label independent of how many are run.
            perm = np.random.default_rng([int(seed), len(attr), 29]).permutation(len(labels))
            out[attr] = str(labels[perm[int(identity) % len(labels)]])
        return Demographics(out["age_group"], out["gender"], out["ethnicity"])
    raise ValueError(f"unknown demographics mode {cfg.mode!r}; use 'balanced' or 'table'")


_AGE_WORDS = {"young": ("young", "in their twenties", "in their early thirties", "youthful"),
              "elderly": ("elderly", "in their seventies", "older", "in their late sixties")}
_GENDER_WORDS = {"man": ("man", "male"), "woman": ("woman", "female")}
_ATTIRE = ("a plain grey t-shirt", "a navy sweater", "a white collared shirt", "a denim jacket",
           "a black turtleneck", "a hospital gown", "a green hoodie", "a beige cardigan",
           "a checked flannel shirt", "a dark suit jacket", "a red knit sweater",
           "a light blue blouse", "a striped polo shirt", "a leather jacket", "a wool coat",
           "a yellow raincoat", "a scrubs top", "a linen shirt", "a black hoodie",
           "a patterned scarf")
_HAIR = ("short hair", "cropped hair", "long hair tied back", "curly hair", "wavy hair",
         "straight hair", "grey hair", "a shaved head", "braided hair", "thinning hair",
         "shoulder-length hair", "a bun")
_SETTING = ("studio lighting", "soft window light", "neutral background", "clinic room",
            "plain backdrop", "diffuse daylight")


def make_prompt(demo: Demographics, rng: np.random.Generator) -> str:
    """Demographic prompt for the neutral-face image; thousands of distinct combinations."""
    age = rng.choice(_AGE_WORDS[demo.age_group])
    gender = rng.choice(_GENDER_WORDS[demo.gender])
    hair = rng.choice(_HAIR)
    attire = rng.choice(_ATTIRE)
    setting = rng.choice(_SETTING)
    return (f"portrait photo of a {age} {demo.ethnicity} {gender} with {hair}, wearing {attire}, "
            f"neutral expression, looking at the camera, {setting}, photorealistic")


NEGATIVE_PROMPT = ("cartoon, illustration, painting, deformed, extra limbs, blurry, low quality, "
                   "text, watermark, smiling, open mouth, sunglasses, hat")
