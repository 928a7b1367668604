"""Training options as frozen dataclasses, checked once; the command line's options are generated from their fields.

A field's metadata holds its help, its check (:mod:`trillsson_tf.checks`) and, where it differs
from the field name, its flag; ``add_arguments`` and ``from_args`` turn a config class into argparse
options and back, so the library's defaults are the CLI's. TensorFlow-free.
"""
import argparse
import dataclasses

from trillsson_tf import checks
from trillsson_tf.errors import ParameterError

__all__ = ["DEFAULT_STUDENT", "DistillConfig", "LOSSES", "LR_SCHEDULES", "STRATEGIES", "TARGET_MODES",
           "add_arguments", "as_record", "from_args", "make_config"]

LOSSES = ("mse", "cosine", "l1")
LR_SCHEDULES = ("cosine", "constant")
STRATEGIES = ("none", "mirrored", "multiworker")
TARGET_MODES = ("global", "local")
DEFAULT_STUDENT = "tiny_cnn"
_SPEECH_EMBEDDING = "speech_embedding"


def option(default, help: str, *, check=None, flag=None, type=None, choices=None, cli: bool = True):
    """A config field: ``default``, one line of ``help``, a ``check(name, value)``, CLI details."""
    metadata = {"help": help, "check": check, "flag": flag, "type": type, "choices": choices, "cli": cli}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _check_fields(config) -> None:
    for field in dataclasses.fields(config):
        check = field.metadata.get("check")
        if check is not None:
            check(field.name, getattr(config, field.name))


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """What :func:`trillsson_tf.distill.distill` trains: teacher, student, loss, optimizer, data stream."""

    teacher: object = option(_SPEECH_EMBEDDING, "teacher spec (preset, file, hub handle) or, in Python, a teacher")
    output_key: object = option(None, "teacher output key when it has several", flag="--teacher-output", type=str)
    student: str = option(DEFAULT_STUDENT, "student name (see `trillsson-tf models`)")
    student_options: dict = option({}, "overrides of the student's preset config", cli=False)
    target_mode: object = option(None, "clip vector or per-2 s-chunk targets (default: global, or the --targets "
                                       "folder's)", check=checks.optional(checks.choice(*TARGET_MODES)), type=str,
                                 choices=TARGET_MODES)
    loss: str = option("mse", "distillation loss", check=checks.choice(*LOSSES), choices=LOSSES)
    lr: float = option(1e-3, "Adam learning rate (peak of the schedule)", check=checks.positive)
    lr_schedule: str = option("cosine", "learning-rate schedule (cosine decays to 1%% of --lr)",
                              check=checks.choice(*LR_SCHEDULES), choices=LR_SCHEDULES)
    batch_size: int = option(32, "crops per step (the global batch under a strategy)", check=checks.positive_int)
    steps: int = option(2000, "total optimizer steps (a resumed run continues up to this number)",
                        check=checks.positive_int)
    checkpoint_every: int = option(500, "steps between checkpoints", check=checks.positive_int)
    validation_fraction: float = option(0.1, "share of files held out (deterministic, by file name)",
                                        check=checks.fraction)
    seed: int = option(0, "seeds the split, the crops and the weights", check=checks.non_negative_int)
    outputs: object = option(None, "expected teacher output width (e.g. 3 A/D/V scores); refused when the teacher "
                                   "differs", check=checks.optional(checks.positive_int), type=int)
    ccc_weight: float = option(0.0, "add this weight times (1 - CCC) over each batch to the loss (score students)",
                               check=checks.non_negative)
    augment: int = option(0, "augmented views per training file (speed, trim, gain, noise), each with its own cached "
                             "teacher target", check=lambda name, value: _views(value))
    shuffle_buffer: object = option(None, "training crops shuffled together (64 KB each, kept in checkpoints; "
                                          "default 1024)", check=checks.optional(checks.positive_int), type=int)
    mixed_precision: object = option(None, "mixed_float16 compute with loss scaling, float32 export (default: on "
                                           "with a GPU)", type=bool)
    strategy: object = option("none", "tf.distribute strategy; --batch-size is the global batch (multiworker reads "
                                      "TF_CONFIG)", choices=STRATEGIES)

    def __post_init__(self):
        _check_fields(self)


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
    record = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        record[field.name] = value if value is None or isinstance(value, (str, int, float, bool, dict, list, tuple)) \
            else getattr(value, "spec", type(value).__name__)
    return record


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
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction if default is None else (
                "store_false" if default else "store_true")
        else:
            options.update(type=kind, choices=field.metadata.get("choices"))
        parser.add_argument(_flag(field), **options)


def from_args(cls, args, **extra):
    """The config of parsed ``args`` (the fields ``add_arguments`` made), with ``extra`` fields."""
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(cls)
              if field.metadata.get("cli", True)}
    return cls(**values, **extra)
