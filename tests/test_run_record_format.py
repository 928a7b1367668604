"""The run record format round-trips, reads records written before it had a version, and refuses damaged ones."""

import json

import pytest

from trillsson_tf.errors import ParameterError
from trillsson_tf.formats.run_record import ENTRIES, OPTIMIZE_FORMAT, RUN_FORMAT, RunRecord, read_record, write_record

IDENTITY = {"teacher": "campplus", "student": "tiny_cnn_k5", "training_records": "750 records, sha256 ab12"}
FIELDS = {
    "identity": IDENTITY,
    "step": 1000,
    "config": {"teacher": "campplus", "steps": 1000, "lr": 0.001},
    "loss_history": [[10, 3.5], [20, 2.25]],
    "validation_history": [[500, 0.75]],
    "resumed_from_step": None,
    "export": None,
    "stages": {"prune": {"steps": 100, "step": 100, "loss_curve": [[10, 0.5]]}},
}


def test_record_round_trips_through_dict_and_file(tmp_path):
    record = RunRecord.from_dict(FIELDS)
    assert (record.identity, record.step, record.format) == (IDENTITY, 1000, RUN_FORMAT)
    assert record.fields() == FIELDS and RunRecord.from_dict(record.to_dict()) == record
    path = tmp_path / "run.json"
    write_record(path, FIELDS)  # the engine's dict, written with its format
    assert json.loads(path.read_text()) == {"format": RUN_FORMAT, **FIELDS}
    assert read_record(path) == record and read_record(path).fields() == FIELDS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # whole, no partial file left


def test_a_record_keeps_its_own_format():
    report = {"format": OPTIMIZE_FORMAT, "identity": IDENTITY, "stages": {}}  # the optimizer's optimize.json
    record = RunRecord.from_dict(report)
    assert record.format == OPTIMIZE_FORMAT and record.to_dict() == report and "format" not in record.fields()


def test_records_without_a_format_or_identity_are_read():
    old = RunRecord.from_dict({"step": 10, "loss_history": [[10, 1.0]]})  # before identities and versions
    assert old.identity is None and old.step == 10 and old.fields() == {"step": 10, "loss_history": [[10, 1.0]]}
    assert RunRecord().to_dict() == {"format": RUN_FORMAT}


def test_entries_name_what_the_engine_reads():
    assert {"identity", "step", "loss_history", "validation_history", "config", "export"} <= set(ENTRIES)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", r"^Run record '.*run\.json' is unreadable \(Expecting value"),
        ('{"identity": ', r"is unreadable"),
        ("[1, 2]", r"is not a run record: it holds a JSON list, not an object\.$"),
        ('{"format": "trillsson_tf.run/2"}', r"its format 'trillsson_tf.run/2' is not one of .* a newer trillsson_tf"),
        ('{"identity": "x"}', r"its identity is 'x', not an object"),
        ('{"step": -1}', r"its step is -1, not a step number"),
        ('{"step": true}', r"its step is True"),
        ('{"loss_history": [[1.5, 2.0]]}', r"its loss_history is not a list of \[step, value\] points"),
    ],
)
def test_damaged_records_are_refused_in_one_line(tmp_path, text, match):
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(ParameterError, match=match) as caught:
        read_record(path)
    assert "\n" not in str(caught.value)


def test_a_resume_refusal_names_the_folder_and_the_way_out(tmp_path):
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(
        ParameterError, match=r"^Cannot resume '.*': run\.json is unreadable \(.*\); rerun with --force"
    ):
        read_record(tmp_path / "run.json", resuming=str(tmp_path))
    with pytest.raises(ParameterError, match=r"^Cannot resume '.*': missing\.json is unreadable"):
        read_record(tmp_path / "missing.json", resuming=str(tmp_path))


def test_a_malformed_record_is_not_written(tmp_path):
    with pytest.raises(ParameterError, match="its step is 'x'"):
        write_record(tmp_path / "run.json", {"step": "x"})
    assert not (tmp_path / "run.json").exists()
