"""tf.distribute in the distiller: mirrored on two logical CPUs matches one device; two multiworker processes split the shards."""

import glob
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from trillsson_tf.apps import cli
from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.train.data import find_audio
from trillsson_tf.train.distribute import make_strategy, parse_tf_config
from trillsson_tf.errors import ParameterError
from trillsson_tf.train.targets import build_cache
from trillsson_tf.teachers import load_teacher

JOB = os.path.join(os.path.dirname(__file__), "scripts", "distill_job.py")
# A constant learning rate: a run resumed towards more steps follows the same schedule.
TRAINING = {"batch_size": 8, "lr": 3e-3, "lr_schedule": "constant", "checkpoint_every": 10}


@pytest.fixture(scope="module")
def targets_dir(tmp_path_factory):
    """A targets folder (the local cache's) over 24 real FSDD digits, in 4 shards."""
    files = sorted(glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "*_5.wav")))[:24]
    cache = tmp_path_factory.mktemp("cache")
    return build_cache(load_teacher("speech_embedding"), find_audio(files), cache_dir=cache, shard_size=6).directory


def _run_job(job: dict, *, env=None):
    """Start the job script; returns the Popen (stdout piped)."""
    return subprocess.Popen(
        [sys.executable, JOB, json.dumps(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _results(process, timeout_s: int = 400) -> list:
    output, _ = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, output[-3000:]
    return [json.loads(line[len("RESULT ") :]) for line in output.splitlines() if line.startswith("RESULT ")]


def _losses(result) -> np.ndarray:
    return np.array([loss for _, loss in result["losses"]])


def test_mirrored_on_two_logical_cpus_matches_one_device_and_resumes(tmp_path, targets_dir):
    runs = [
        {"out_dir": str(tmp_path / "one"), "strategy": "none", "steps": 20, **TRAINING},
        {"out_dir": str(tmp_path / "mirrored"), "strategy": "mirrored", "steps": 10, **TRAINING},
        {"out_dir": str(tmp_path / "mirrored"), "strategy": "mirrored", "steps": 20, "resume": True, **TRAINING},
        {"out_dir": str(tmp_path / "odd"), "strategy": "mirrored", "steps": 2, **{**TRAINING, "batch_size": 7}},
    ]
    one, first, resumed, odd = _results(_run_job({"targets": targets_dir, "logical_cpus": 2, "runs": runs}))
    assert (one["replicas"], first["replicas"]) == (1, 2) and first["strategy"] == "mirrored"
    # Same global batch and data: the mirrored curve, resumed from its step-10 checkpoint, follows
    # the single-device one within float and per-replica BatchNorm noise.
    assert resumed["resumed_from_step"] == 10 and [step for step, _ in resumed["losses"]] == [10, 20]
    np.testing.assert_allclose(_losses(resumed), _losses(one), rtol=0.02)
    assert os.path.isfile(os.path.join(resumed["export"], "saved_model.pb"))
    assert "batch_size=7 is the global batch and must divide evenly over the 2 replicas" in odd["error"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_multiworker_processes_train_one_model_each_from_its_own_shards(tmp_path, targets_dir):
    cluster = {"worker": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]}
    run = {"out_dir": str(tmp_path / "multi"), "strategy": "multiworker", "steps": 20, **TRAINING}
    workers = [
        _run_job(
            {"targets": targets_dir, "runs": [run]},
            env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})},
        )
        for index in range(2)
    ]
    (chief,), (other,) = (_results(worker) for worker in workers)
    assert chief["replicas"] == other["replicas"] == 2 and chief["strategy"] == "multiworker"
    assert chief["losses"] == other["losses"]  # one synchronous training run
    # Each worker read its own 2 of the 4 shards (reader_shards) and kept its own data position.
    assert (chief["input_pipelines"], chief["shards_read"], other["shards_read"]) == (2, 2, 2)
    assert os.path.isfile(os.path.join(chief["export"], "saved_model.pb")) and other["export"] is None
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == [
        "checkpoint",
        "ckpt-10.data-00000-of-00001",
        "ckpt-10.index",
        "ckpt-20.data-00000-of-00001",
        "ckpt-20.index",
        "worker-1",
    ]
    assert "checkpoint" in os.listdir(tmp_path / "multi" / "checkpoints" / "worker-1")
    assert np.all(np.isfinite(_losses(chief)))


@pytest.mark.parametrize(
    "raw, message",
    [
        ("", "needs TF_CONFIG"),
        ('{"cluster": {"worker": ["a:1"]', "TF_CONFIG is not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', "needs a 'cluster' object"),
        ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "list of 'host:port'"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "ps", "index": 0}}', "type one of"),
        (
            '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
            "index 2 is not a position",
        ),
    ],
)
def test_malformed_tf_config_gets_a_clear_message(raw, message):
    with pytest.raises(ParameterError, match=message):
        parse_tf_config(raw)


def test_cli_reports_malformed_tf_config_and_unknown_strategy(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    argv = ["distill", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--strategy", "multiworker"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "TF_CONFIG is not valid JSON" in err and "Example: TF_CONFIG=" in err and "Traceback" not in err
    with pytest.raises(ParameterError, match="Unknown strategy 'tpu'.*mirrored"):
        make_strategy("tpu")
