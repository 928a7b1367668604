"""The run record: ``run.json`` in a training run's folder and its export (``optimize.json`` for the optimizer).

The one home of the format: its version, the entries (:data:`ENTRIES`), :class:`RunRecord`,
:func:`write_record` (atomic) and :func:`read_record`, which refuses a damaged file in one line.
A record without ``format`` was written before the format had a version and is read as version 1.
No TensorFlow.
"""

import dataclasses
import json
import os

from trillsson_tf.errors import ParameterError
from trillsson_tf.folders import write_json

__all__ = [
    "ENTRIES",
    "OPTIMIZE_FORMAT",
    "READABLE_FORMATS",
    "RUN_FILE",
    "RUN_FORMAT",
    "RunRecord",
    "read_record",
    "write_record",
]

RUN_FILE = "run.json"
"""The record's file name in a run folder and in the export a run writes."""
RUN_FORMAT = "trillsson_tf.run/1"
"""The format of a training run's record (``run.json``)."""
OPTIMIZE_FORMAT = "trillsson_tf.optimize/1"
"""The optimizer's record (``optimize.json``): a run record whose entries are its stages, options and data."""
READABLE_FORMATS = (RUN_FORMAT, OPTIMIZE_FORMAT)
"""Formats read and written (a record without ``format`` is read as :data:`RUN_FORMAT`)."""

ENTRIES = {
    "identity": "what a resume must match: teacher, student, options, data fingerprints (RunFolder.open, confirm)",
    "step": "the step of the last checkpoint, written after it (RunFolder.saver)",
    "config": "the workflow's config as given (configs.as_record)",
    "teacher": "the teacher's description; several teachers: 'spec' joins theirs, 'teachers' has each one's "
    "description, output name, width, weight, skipped files and files without a target",
    "student": "name, config, parameters and output of the student",
    "data": "sources, files, records, hours, shards of the training data",
    "versions": "package versions of the run",
    "loss_history": "[[step, loss], ...] every LOG_EVERY_STEPS steps, cut back to the step on resume",
    "validation_history": "[[step, value], ...], cut back likewise (any '*_history' list is)",
    "train_seconds": "StepTiming: seconds of training (also steps_per_second, first_step_seconds, "
    "steady_steps_per_second)",
    "resumed_from_step": "the step this process started at, or None for a new run",
    "export": "the export folder, or None",
    "fidelity": "distill: fidelity to the teacher on held-out files (several teachers: per teacher output)",
    "scores": "finetune: keyword accuracy and speaker verification",
    "stages": "the optimizer: per stage, its steps, step and loss curve",
}
"""The entries the training workflows write (each writes those it has); others are kept as written."""


def _history(name: str, value) -> bool:
    """Whether ``value`` is a well-formed ``*_history`` entry (or no list at all, which is left alone)."""
    if not name.endswith("_history") or not isinstance(value, list):
        return True
    return all(isinstance(point, list) and point and isinstance(point[0], int) for point in value)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A run's record: its identity and step, which the engine reads back, and every other entry.

    Attributes:
        identity: What a resume must match (``None``: a record older than identities).
        step: The step of the last checkpoint (``None``: none yet).
        entries: The other entries (:data:`ENTRIES`), in order, as written.
        format: One of :data:`READABLE_FORMATS` (written first; :meth:`fields` leaves it out).
    """

    identity: dict = None
    step: int = None
    entries: dict = dataclasses.field(default_factory=dict)
    format: str = RUN_FORMAT

    def fields(self) -> dict:
        """The record as the engine holds it: ``identity``, ``step`` (when set) and the entries; no ``format``."""
        known = {key: value for key, value in (("identity", self.identity), ("step", self.step)) if value is not None}
        return {**known, **self.entries}

    def to_dict(self) -> dict:
        """The record as written: ``format`` first, then :meth:`fields`."""
        return {"format": self.format, **self.fields()}

    @classmethod
    def from_dict(cls, values) -> "RunRecord":
        """Parse a record (with or without ``format``: a workflow that keeps its own, as the optimizer does,
        puts it in the dict it writes).

        Raises:
            ParameterError: what is wrong (without the file's name: :func:`read_record` adds it).
        """
        if not isinstance(values, dict):
            raise ParameterError(f"it holds a JSON {type(values).__name__}, not an object")
        values = dict(values)
        form = values.pop("format", RUN_FORMAT)
        identity, step = values.pop("identity", None), values.pop("step", None)
        if form not in READABLE_FORMATS:
            raise ParameterError(
                f"its format {form!r} is not one of {list(READABLE_FORMATS)}; a newer trillsson_tf wrote it"
            )
        if identity is not None and not isinstance(identity, dict):
            raise ParameterError(f"its identity is {identity!r:.60}, not an object")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise ParameterError(f"its step is {step!r:.60}, not a step number")
        broken = [name for name, value in values.items() if not _history(name, value)]
        if broken:
            raise ParameterError(f"its {broken[0]} is not a list of [step, value] points")
        return cls(identity, step, values, form)


def write_record(path, record) -> str:
    """Write a :class:`RunRecord` (or its :meth:`~RunRecord.fields` as a dict) to ``path``, whole or not at all."""
    if not isinstance(record, RunRecord):
        record = RunRecord.from_dict(record)
    return write_json(path, record.to_dict())


def read_record(path, *, resuming=None) -> RunRecord:
    """The record in ``path``.

    Args:
        path: The record file.
        resuming: The run folder being resumed, for the message (which then says how to start over).

    Raises:
        ParameterError: the file cannot be read, is not JSON or not a run record: one line naming
            the file (``Cannot resume '<folder>': run.json is unreadable (...); rerun with --force ...``).
    """
    path = os.fspath(path)
    what = f"Cannot resume {resuming!r}: {os.path.basename(path)}" if resuming else f"Run record {path!r}"
    fix = "; rerun with --force (overwrite=True) to start over" if resuming else ""
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except (OSError, ValueError) as error:
        raise ParameterError(f"{what} is unreadable ({error}){fix}.") from None
    try:
        return RunRecord.from_dict(values)
    except ParameterError as error:
        raise ParameterError(f"{what} is not a run record: {error}{fix}.") from None
