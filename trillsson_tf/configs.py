"""Training options as frozen dataclasses, checked once; the command line's options are generated from their fields.

A field's metadata holds its help, its check (:mod:`trillsson_tf.checks`) and, where it differs
from the field name, its flag; ``add_arguments`` and ``from_args`` turn a config class into argparse
options and back, so the library's defaults are the CLI's. TensorFlow-free.
"""

import argparse
import dataclasses

from trillsson_tf import checks
from trillsson_tf.errors import ParameterError

__all__ = [
    "DEFAULT_SEGMENT_SAMPLES",
    "DEFAULT_STUDENT",
    "DistillConfig",
    "ENCODER_LAYERS",
    "FinetuneConfig",
    "LayerDistillConfig",
    "LOSSES",
    "LR_SCHEDULES",
    "STRATEGIES",
    "TARGET_MODES",
    "add_arguments",
    "as_record",
    "from_args",
    "make_config",
]

LOSSES = ("mse", "cosine", "l1")
LR_SCHEDULES = ("cosine", "constant")
STRATEGIES = ("none", "mirrored", "multiworker")
TARGET_MODES = ("global", "local")
DEFAULT_STUDENT = "tiny_cnn"
ENCODER_LAYERS = ("all", "last")
DEFAULT_SEGMENT_SAMPLES = 16000
_SPEECH_EMBEDDING = "speech_embedding"


def option(default, help: str, *, check=None, flag=None, type=None, choices=None, cli: bool = True, many=False):
    """A config field: ``default``, one line of ``help``, a ``check(name, value)``, CLI details.

    ``many``: the flag may be repeated; one value gives the value, several a tuple.
    """
    metadata = {"help": help, "check": check, "flag": flag, "type": type, "choices": choices, "cli": cli}
    metadata["many"] = many
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _check_fields(config) -> None:
    for field in dataclasses.fields(config):
        check = field.metadata.get("check")
        if check is not None:
            check(field.name, getattr(config, field.name))


def _lr():
    return option(1e-3, "Adam learning rate (peak of the schedule)", check=checks.positive)


def _lr_schedule():
    return option(
        "cosine",
        "learning-rate schedule (cosine decays to 1%% of --lr)",
        check=checks.choice(*LR_SCHEDULES),
        choices=LR_SCHEDULES,
    )


def _steps():
    return option(2000, "total optimizer steps (a resumed run continues up to this number)", check=checks.positive_int)


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """What :func:`trillsson_tf.train.distill.distill` trains: teacher, student, loss, optimizer, data stream."""

    teacher: object = option(
        _SPEECH_EMBEDDING,
        "teacher spec (preset, file, hub handle) or, in Python, a teacher; repeat for several teachers",
        check=lambda name, value: _teachers(value),
        many=True,
    )
    teacher_weights: object = option(
        None,
        "loss weight of each --teacher, in order (repeat; default equal); several teachers only",
        flag="--teacher-weight",
        type=float,
        many=True,
    )
    output_key: object = option(None, "teacher output key when it has several", flag="--teacher-output", type=str)
    student: str = option(DEFAULT_STUDENT, "student name (see `trillsson-tf models`)")
    student_options: dict = option({}, "overrides of the student's preset config", cli=False)
    target_mode: object = option(
        None,
        "clip vector or per-2 s-chunk targets (default: global, or the --targets folder's)",
        check=checks.optional(checks.choice(*TARGET_MODES)),
        type=str,
        choices=TARGET_MODES,
    )
    loss: str = option("mse", "distillation loss", check=checks.choice(*LOSSES), choices=LOSSES)
    lr: float = _lr()
    lr_schedule: str = _lr_schedule()
    batch_size: int = option(32, "crops per step (the global batch under a strategy)", check=checks.positive_int)
    steps: int = _steps()
    checkpoint_every: int = option(500, "steps between checkpoints", check=checks.positive_int)
    validation_fraction: float = option(
        0.1, "share of files held out (deterministic, by file name)", check=checks.fraction
    )
    seed: int = option(0, "seeds the split, the crops and the weights", check=checks.non_negative_int)
    outputs: object = option(
        None,
        "expected teacher output width (e.g. 3 A/D/V scores); refused when the teacher differs",
        check=checks.optional(checks.positive_int),
        type=int,
    )
    ccc_weight: float = option(
        0.0, "add this weight times (1 - CCC) over each batch to the loss (score students)", check=checks.non_negative
    )
    augment: int = option(
        0,
        "augmented views per training file (speed, trim, gain, noise), each with its own cached teacher target",
        check=lambda name, value: _views(value),
    )
    shuffle_buffer: object = option(
        None,
        "training crops shuffled together (64 KB each, kept in checkpoints; default 1024)",
        check=checks.optional(checks.positive_int),
        type=int,
    )
    mixed_precision: object = option(
        None, "mixed_float16 compute with loss scaling, float32 export (default: on with a GPU)", type=bool
    )
    strategy: object = option(
        "none",
        "tf.distribute strategy; --batch-size is the global batch (multiworker reads TF_CONFIG)",
        choices=STRATEGIES,
    )

    def __post_init__(self):
        _check_fields(self)
        _check_teacher_set(self)

    @property
    def teachers(self) -> tuple:
        """The teachers as a tuple (one for a single-teacher run)."""
        return tuple(self.teacher) if isinstance(self.teacher, (list, tuple)) else (self.teacher,)

    @property
    def weights(self) -> tuple:
        """Each teacher's loss weight, summing to 1 (equal unless ``teacher_weights`` says otherwise)."""
        given = _as_tuple(self.teacher_weights) or (1.0,) * len(self.teachers)
        return tuple(float(weight) / sum(given) for weight in given)


def _as_tuple(value):
    return None if value is None else tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _teachers(value) -> None:
    if isinstance(value, (list, tuple)) and not value:
        raise ParameterError("teacher: give at least one teacher.")


def _check_teacher_set(config) -> None:
    """Weights one per teacher, each > 0; options that need exactly one teacher refused with several."""
    count, weights = len(config.teachers), _as_tuple(config.teacher_weights)
    if weights is not None:
        if len(weights) != count:
            raise ParameterError(
                f"teacher_weights (--teacher-weight) gives {len(weights)} weight(s) for {count} teacher(s); "
                "give one per teacher, in the same order."
            )
        for weight in weights:
            checks.positive("teacher_weights", weight)
    if count > 1:
        for name in ("output_key", "outputs"):
            if getattr(config, name) is not None:
                raise ParameterError(f"{name} applies to one teacher; with {count} teachers drop it.")
        if config.target_mode not in (None, "global"):
            raise ParameterError("Several teachers distil clip vectors only: target_mode must be 'global'.")


@dataclasses.dataclass(frozen=True)
class LayerDistillConfig:
    """What :func:`trillsson_tf.train.distill_layers.distill_layers` trains: teacher layers, student, optimizer, stream."""

    teacher: object = option(_SPEECH_EMBEDDING, "layered teacher spec or, in Python, a loaded one")
    layers: object = option(None, "teacher layers to distill, e.g. 4,8,12 (default: 1/3, 2/3, top)", type=str)
    student: str = option("distil-small", "layer-distillation student (models of family 'waveform')")
    student_options: dict = option({}, "overrides of the student config (width, depth, ...)", cli=False)
    size_fraction: float = option(
        0.25, "student budget as a share of the teacher's parameters (without a width)", check=checks.positive
    )
    segment_samples: int = option(
        DEFAULT_SEGMENT_SAMPLES,
        "training segment length in samples (>= the teacher's window)",
        check=checks.positive_int,
    )
    lr: float = _lr()
    lr_schedule: str = _lr_schedule()
    batch_size: int = option(16, "segments per step", check=checks.positive_int)
    steps: int = _steps()
    checkpoint_every: int = option(500, "steps between checkpoints", check=checks.positive_int)
    validation_fraction: float = option(0.1, "share of files held out for the validation loss", check=checks.fraction)
    seed: int = option(0, "seeds the split, the batches and the weights", check=checks.non_negative_int)
    augment: int = option(
        0,
        "augmented views per training file, each with its own cached teacher layers",
        check=lambda name, value: _views(value),
    )

    def __post_init__(self):
        _check_fields(self)


def _column(text: str):
    """A label column on the command line; ``none`` turns the task off."""
    return None if text.lower() == "none" else text


def _margin(name, value) -> None:
    import math

    checks.non_negative(name, value)
    if not value < math.pi / 2:
        raise ParameterError(f"{name} must be in [0, pi/2) radians, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """What :func:`trillsson_tf.train.finetune.finetune` trains: heads, tasks, losses, optimizer, batches."""

    kws_labels: object = option("digit", "keyword label column ('none': no keyword task)", type=_column)
    sv_labels: object = option("speaker", "speaker label column ('none': no speaker task)", type=_column)
    freeze_encoder: bool = option(False, "train the heads only (frozen encoder)")
    encoder_layers: str = option(
        "all",
        "hidden states the heads read: every layer's, concatenated, or the last one",
        check=checks.choice(*ENCODER_LAYERS),
        choices=ENCODER_LAYERS,
    )
    kws_weight: float = option(1.0, "weight of the keyword loss", check=checks.positive)
    sv_weight: float = option(1.0, "weight of the speaker (AAM-softmax) loss", check=checks.positive)
    speaker_dim: int = option(128, "speaker embedding size", check=checks.positive_int)
    hidden: int = option(128, "width of each head's hidden layer", check=checks.positive_int)
    margin: float = option(0.2, "AAM angular margin, radians", check=_margin)
    scale: float = option(30.0, "AAM scale", check=checks.positive)
    holdout_speakers: object = option(None, "speakers held out for verification", cli=False)
    sv_holdout: float = option(0.4, "share (or count) of speakers held out for verification", check=checks.positive)
    sv_groups: object = option(None, "label column within whose values verification is also scored alone", type=str)
    steps: int = option(600, "optimizer steps, heads-only steps included", check=checks.positive_int)
    head_steps: object = option(
        None,
        "heads-only steps before the encoder is unfrozen (default: a third of --steps)",
        check=checks.optional(checks.non_negative_int),
        type=int,
    )
    encoder_lr_scale: float = option(1.0, "encoder learning rate as a share of --lr", check=checks.positive)
    balance_batches: bool = option(True, "half the clips per keyword, half per speaker (--no-balance-batches: uniform)")
    batch_size: int = option(16, "clips per step and task", check=checks.positive_int)
    lr: float = option(
        1e-3, "Adam learning rate of the heads (cosine decay to 1%% over --steps)", check=checks.positive
    )
    checkpoint_every: int = option(200, "steps between checkpoints", check=checks.positive_int)
    seed: int = option(0, "seeds the speaker split, the batches and the heads", check=checks.non_negative_int)

    def __post_init__(self):
        _check_fields(self)
        if self.kws_labels is None and self.sv_labels is None:
            raise ParameterError("Give at least one task: kws_labels and/or sv_labels (CLI: not both 'none').")
        head_steps = self.resolved_head_steps
        if not 0 <= head_steps <= self.steps:
            raise ParameterError(f"head_steps must be an integer in [0, steps={self.steps}], got {self.head_steps!r}.")

    @property
    def resolved_head_steps(self) -> int:
        """Every step when the encoder is frozen; else ``head_steps``, by default a third of ``steps``."""
        if self.freeze_encoder:
            return self.steps
        return self.steps // 3 if self.head_steps is None else self.head_steps


def _views(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(f"augment must be a number of views >= 0, got {value!r}.")


def make_config(cls, config=None, **overrides):
    """``config`` (default: ``cls()``) with ``overrides``; an unknown name is a one-line ParameterError."""
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ParameterError(f"Unknown option(s) {unknown} for {cls.__name__}; expected some of {sorted(names)}.")
    if config is not None and not isinstance(config, cls):
        raise ParameterError(f"config must be a {cls.__name__}, got {type(config).__name__}.")
    return dataclasses.replace(config or cls(), **overrides)


def as_record(config) -> dict:
    """The config as JSON-able data for the run record (a teacher object by its spec)."""

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if value is None or isinstance(value, (str, int, float, bool, dict)):
            return value
        return getattr(value, "spec", type(value).__name__)

    return {field.name: plain(getattr(config, field.name)) for field in dataclasses.fields(config)}


def _flag(field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def add_arguments(parser, cls, *, help_overrides=None) -> None:
    """One argparse option per CLI field of ``cls``: flag, type, choices, default and help from the field."""
    for field in dataclasses.fields(cls):
        if not field.metadata.get("cli", True):
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        kind = field.metadata.get("type") or (type(default) if default is not None else str)
        helptext = (help_overrides or {}).get(field.name, field.metadata["help"])
        options = {"dest": field.name, "default": default, "help": helptext}
        if field.metadata.get("many"):  # repeated flag: None when absent, so from_args keeps the field's default
            options.update(action="append", default=None, help=f"{helptext} (default: {default})")
        if kind is bool:
            options["action"] = "store_true" if default is False else argparse.BooleanOptionalAction
        else:
            options.update(type=kind, choices=field.metadata.get("choices"))
        parser.add_argument(_flag(field), **options)


def from_args(cls, args, **extra):
    """The config of parsed ``args`` (the fields ``add_arguments`` made), with ``extra`` fields."""
    values = {}
    for field in dataclasses.fields(cls):
        if field.metadata.get("cli", True):
            value = getattr(args, field.name)
            if field.metadata.get("many") and isinstance(value, list):
                value = value[0] if len(value) == 1 else tuple(value)
            if not (field.metadata.get("many") and value is None):
                values[field.name] = value
    return cls(**values, **extra)
