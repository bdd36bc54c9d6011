"""The ``train`` section of the config: plain dataclasses, no torch (a generation worker
that unpickles the config must not pay torch's 1.2 s import)."""
from __future__ import annotations

from dataclasses import dataclass, field


SAMPLING = ("uniform", "weighted", "pain_x2")
AUGMENT_STYLES = ("pain3d", "authors")
STUDENT_INITS = ("scratch", "teacher")
DISTILL_PROJECTIONS = ("auto", "linear")
FUSIONS = ("none", "intermediate", "late_max", "late_mean", "late_weighted")
FUSION_PARAMS = ("truth", "encoder")


@dataclass
class LossWeights:
    """The paper's values (found by its hyperparameter search)."""

    pspi: float = 1.0
    au: float = 1.0
    pspi_distill: float = 0.1
    au_distill: float = 0.3
    feature_distill: float = 0.5
    temperature: float = 4.0
    pspi_reg: float = 1.0  # regression head (train.model.head regression | both)
    binary: float = 1.0  # binary heads at PSPI >= 1, 2, 3 (same heads)
    # spatial distillation, off at 0 (not in the paper): a small decoder on the student's
    # token grid regresses the heatmap the teacher reads (pixel-aligned with the student's
    # crop; needs no teacher), and each AU query's attention is pulled towards the
    # teacher's attention of the same AU (KL, the teacher's grid)
    heatmap_distill: float = 0.0
    au_attention_distill: float = 0.0


CLASS_WEIGHTS = ("none", "inverse", "sqrt_inverse")


@dataclass
class LoRAConfig:
    """LoRA adapters (peft) on the backbone: ``rank`` 0 is off. With adapters, the backbone's
    own weights stay frozen, only adapters and heads train, and a checkpoint holds just those."""

    rank: int = 0
    alpha: float = 16.0
    dropout: float = 0.1
    targets: list[str] = field(default_factory=lambda: ["qkv", "proj"])
    # the base weights when no pretrained_file is given: a random init under this seed, so a
    # checkpoint of adapters and heads loads onto the same base again
    base_seed: int = 0


@dataclass
class ModelConfig:
    backbone: str = "vit_tiny_patch16_224"
    backbone_kwargs: dict = field(default_factory=dict)  # e.g. {depth: 4} for a smaller ViT
    img_size: int = 224
    pretrained_file: str | None = None  # local weights (.safetensors/.bin/.pth) for the backbone
    au_queries: bool = True
    head_hidden: int = 512
    dropout: float = 0.1
    face_crop: bool = True  # the input is the face square of the frame's mask (train/crop.py)
    # conv backbones: the AU queries (and a heatmap decoder) read the stride-8 feature map
    # (12 x 12 cells at 96 px) with the final map added top-down, not the final 3 x 3 cells
    local_tokens: bool = False
    per_au_heads: bool = False  # each AU query read out by its own MLP (not one shared)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    # a neutral frame of the same face beside each input (the row's neutral_sample_id)
    neutral_reference: bool = False
    shared_encoder: bool = False  # the neutral frame through the same backbone (else a second)
    # classification: 17 PSPI logits; regression: sigmoid PSPI/16 + binary PSPI >= 1, 2, 3
    head: str = "classification"
    # paper 003: 3D expression parameters beside the image. intermediate: their MLP feature
    # joins CLS before the PSPI head; late_max | late_mean | late_weighted: a 3D classifier's
    # probabilities combined with the 2D head's
    fusion: str = "none"
    fusion_params: str = "truth"  # truth: the row's expression_params; encoder: predicted
    fusion_encoder: str | None = None  # checkpoint of pain3d train encoder (fusion_params)
    fusion_hidden: int = 64
    params_dim: int = 0  # set from the dataset when fusion is on
    # set from fusion_encoder's checkpoint when training starts: the frozen encoder then
    # lives inside the model, so a checkpoint needs nothing else at evaluation
    fusion_encoder_spec: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        lora = LoRAConfig(**d.pop("lora", None) or {})
        return cls(**d, lora=lora)

    @property
    def classifies(self) -> bool:
        return self.head in ("classification", "both")

    @property
    def regresses(self) -> bool:
        return self.head in ("regression", "both")

    @property
    def late_fusion(self) -> bool:
        return self.fusion.startswith("late_")


@dataclass
class EvalConfig:
    """How a trained model is scored (``pain3d evaluate``, ablate, tune, crossval)."""

    # a neutral-reference model's answers averaged over this many references of the frame's
    # identity (its own first, then other views or sequences); 1: its own only
    neutral_shots: int = 1


RIG_MODELS = ("cgan", "caae")


@dataclass
class RigConfig:
    """``pain3d train rig`` (paper 001): an AU-conditioned generator of expression parameters.
    Uses train's split, num_workers, cpus_per_worker, storage and checkpoint settings."""

    model: str = "cgan"  # cgan: G(z, y); caae: G(E(source expression), y)
    hidden: int = 256  # width of every 3-layer network
    noise_dim: int = 100  # CGAN's z (001: 100)
    latent_dim: int = 50  # CAAE's E(x) in [-1, 1] (001: 50)
    range_weight: float = 10.0  # beta of the L1 range regulariser (001: 10)
    recon_weight: float = 100.0  # lambda of CAAE's L1 reconstruction (001: 100)
    # 001's soft labels y + N(mean, std) on the integer AU levels; std 0: off
    soft_label_mean: float = -0.5
    soft_label_std: float = 0.5
    # CAAE: the expression discriminator also judges each source re-targeted to another
    # row's AUs. Not in 001; without it the generator may ignore the AUs (README, learned rig)
    retarget: bool = False
    iterations: int = 3000  # optimiser steps of each network (001: 150k at lr 1e-5)
    eval_every: int = 250  # steps between validation + checkpoint (one "epoch" of the bar)
    batch_size: int = 64  # per worker (001: 64)
    lr: float = 2e-4
    diversity_samples: int = 64  # outputs drawn for one fixed AU vector in the evaluation


@dataclass
class EncoderConfig:
    """``pain3d train encoder`` (paper 002): image -> expression (and shape) parameters, with
    a 4-layer MLP reading PSPI and the AUs from the predicted parameters. The backbone, image
    size, face crop, epochs and optimiser come from train and train.model."""

    shape: bool = True  # also regress the identity's shape parameters
    head_hidden: int = 256  # the intensity head's width
    # loss weights: MSE on the standardised expression and shape parameters (002's L_3D-GT),
    # then 002's intensity-aware loss: cross-entropy over PSPI 0-16 plus squared errors of
    # the intensities (PSPI / 16 and each AU / its maximum)
    expression: float = 1.0
    shape_weight: float = 1.0
    pspi_ce: float = 0.5
    intensity_mse: float = 0.5


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    rig: RigConfig = field(default_factory=RigConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    weights: LossWeights = field(default_factory=LossWeights)
    epochs: int = 100
    freeze_backbone_epochs: int = 5
    batch_size: int = 32
    lr_backbone: float = 5e-6
    lr_heads: float = 5e-5
    weight_decay: float = 0.05
    min_lr_ratio: float = 0.01  # cosine annealing down to 1% of the start
    grad_clip: float = 1.0
    amp: bool = True  # mixed precision, on GPU only
    augment: bool = True  # horizontal flip (image and heatmap together), brightness jitter
    # pain3d: flip p 0.5 + brightness 0.2 (student); authors: flip p 0.3, rotation +-15 deg,
    # colour jitter 0.2 (brightness, contrast, saturation), as TaatiTeam/Pain-in-3D trains UNBC
    augment_style: str = "pain3d"
    num_workers: int = 2
    use_gpu: bool | None = None  # None: when the cluster has GPUs
    cpus_per_worker: float = 1.0
    decode_cpus: float = 1.0  # CPUs each Ray Data decoding task reserves
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)
    storage: str = "runs"  # local folder or s3://bucket/prefix
    max_failures: int = 1
    num_to_keep: int = 2
    # decode each frame once and keep it (float16) in Ray's object store for all epochs:
    # for datasets that fit (the laptop preset's); off, frames are decoded at every epoch
    cache_decoded: bool = False
    max_frames: int | None = None  # cap per split, a seeded sample stratified by identity
    # rows in each worker's local shuffle buffer (0: none); with the block order reshuffled
    # every epoch, a batch of 32 then mixes ~20 identities
    shuffle_buffer: int = 1024
    # leave frames that failed the AU read-back (qa_pass false) out of the train split
    exclude_qa_failures: bool = False
    # class imbalance: PSPI cross-entropy weights from the training split's PSPI histogram,
    # none | inverse (1/n_k) | sqrt_inverse (1/sqrt(n_k)), scaled to average 1 per frame
    class_weights: str = "none"
    # uniform: every training frame once per epoch; weighted: frames drawn with weights
    # inverse to their PSPI level's frequency (the expected count per level is equal);
    # pain_x2: PSPI >= 1 frames at twice the weight of PSPI 0 ones (the authors' sampler)
    sampling: str = "uniform"
    # the student's backbone: scratch (random, seeded) or teacher (a copy of the teacher's
    # trained backbone: a common basis for feature distillation; needs --teacher)
    student_init: str = "scratch"
    # feature distillation's map from the student's CLS to the teacher's: auto (identity
    # when the widths agree, else linear) or linear (always a learnable linear map)
    distill_projection: str = "auto"
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class CrossvalConfig:
    """``pain3d crossval``: subject-grouped K-fold cross-validation (configs/crossval.yaml)."""

    folds: int = 5
    # training subjects held out of each fold's training run to pick its best epoch
    val_fraction: float = 0.2
    # folds trained at once (Ray Tune trials); 0: as many training runs as the cluster holds
    concurrent: int = 0
    cpus_per_trial: float = 0.1  # the trial's own process; its training workers reserve theirs
    # the validation metric that picks each fold's best epoch: AUROC at the reported PSPI >= 3
    # by default (the authors pick by 17-class macro AUROC: val_macro_auroc)
    select_metric: str = "val_auroc_pspi_ge3"
