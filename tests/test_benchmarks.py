"""benchmarks/run_all.py: the committed report is well formed; the quick mode runs end to end (slow)."""

import json
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")
sys.path.insert(0, BENCHMARKS)

import run_all  # noqa: E402


def _check_report(report: dict, out_dir: str, *, quick: bool) -> None:
    assert report["runs"] >= 50 and report["quick"] is quick
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", report["machine"]["date_utc"])
    names = [model["name"] for model in report["models"]]
    assert names[0] == run_all.DISTILLED
    for name in names:
        rows = {row["format"]: row for row in report["rows"] if row["model"] == name}
        assert list(rows) == list(run_all.FORMATS)
        for fmt in ("keras", "savedmodel", "float32", "int8"):
            row = rows[fmt]
            assert "error" not in row, (name, fmt, row.get("error"))
            assert row["file_bytes"] > 0 and row["peak_rss_mb"] > 10
            for seconds in run_all.CLIP_SECONDS:
                latency = row["latency"][f"{seconds}s"]
                assert 0 < latency["median_ms"] <= latency["p90_ms"] and latency["runs"] == report["runs"]
        assert rows["keras"]["fidelity_to_float"]["mean_cosine"] == pytest.approx(1.0, abs=1e-6)
        assert rows["float32"]["fidelity_to_float"]["mean_cosine"] > 0.999
        assert rows["int8"]["file_bytes"] < rows["float32"]["file_bytes"]
    distilled = [row for row in report["rows"] if row["model"] == run_all.DISTILLED and "error" not in row]
    assert all(0 <= row["probes"]["digit"] <= 1 and -1 <= row["fidelity_to_teacher"] <= 1 for row in distilled)
    for path in report["plots"].values():
        assert os.path.getsize(os.path.join(out_dir, path)) > 10_000


def test_committed_report_is_well_formed():
    with open(os.path.join(BENCHMARKS, "results.json")) as handle:
        report = json.load(handle)
    _check_report(report, BENCHMARKS, quick=False)
    with open(os.path.join(BENCHMARKS, "results.md")) as handle:
        markdown = handle.read()
    assert markdown == run_all.to_markdown(report)  # the markdown is the JSON, rendered
    assert markdown.count("\n## ") == len(report["models"]) and markdown.count("| tflm_int8 |") == len(report["models"])
    assert report["machine"]["date_utc"] in markdown and report["machine"]["cpu"] in markdown


@pytest.mark.slow
def test_quick_mode_writes_a_well_formed_report(tmp_path):
    report = run_all.main(["--quick", "--out", str(tmp_path), "--work-dir", str(tmp_path / "work")])
    _check_report(report, str(tmp_path), quick=True)
    with open(tmp_path / "results_quick.json") as handle:
        assert json.load(handle)["rows"] == json.loads(json.dumps(report["rows"]))
    assert (tmp_path / "results_quick.md").read_text().startswith("# trillsson_tf benchmark")
