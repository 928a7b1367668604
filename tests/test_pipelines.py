"""Teacher targets on Apache Beam: the DirectRunner's shards equal the local cache; bad input is refused."""

import glob
import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("apache_beam")

from trillsson_tf.apps import cli  # noqa: E402
from trillsson_tf.audio import SAMPLE_AUDIO_DIR  # noqa: E402
from trillsson_tf.train.data import find_audio, load_clips  # noqa: E402
from trillsson_tf.train.distill import distill  # noqa: E402
from trillsson_tf.errors import ParameterError, TrillssonError  # noqa: E402
from trillsson_tf.metrics import parity  # noqa: E402
from trillsson_tf.pipelines import build_targets, match_audio  # noqa: E402
from trillsson_tf.pipelines.beam_targets import _module_available  # noqa: E402
from trillsson_tf.train.targets import TEACHER_FILE, cached_targets, load_targets, read_targets  # noqa: E402
from trillsson_tf.teachers import Teacher, load_teacher  # noqa: E402

# Eight FSDD digits (two speakers, under 1 s: padded to the teacher's window) and two LibriSpeech
# utterances (several 2 s segments each in local mode).
FSDD_GLOB = os.path.join(SAMPLE_AUDIO_DIR, "fsdd", "[0-3]_[gj]*_5.wav")


@pytest.fixture(scope="module")
def files():
    fsdd = sorted(glob.glob(FSDD_GLOB))
    flacs = glob.glob(os.path.join(SAMPLE_AUDIO_DIR, "librispeech", "*.flac"))
    librispeech = sorted(sorted(flacs, key=os.path.getsize)[-2:])  # the two longest: several 2 s segments
    assert len(fsdd) == 8
    return fsdd + librispeech


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("speech_embedding")


class OtherTeacher(Teacher):
    """A 96-d teacher that is not speech_embedding."""

    def __init__(self):
        super().__init__("other")
        self._finish_init()

    def _embed(self, audio):
        return np.zeros((len(audio), 96), np.float32)


def _compare_with_cache(out_dir, cache_dir, teacher, files, mode):
    """Both folders through the one reader: same keys and audio, targets within float noise."""
    local = cached_targets(teacher, load_clips(find_audio(files)), mode=mode, cache_dir=cache_dir)
    beam_info, beam_records = read_targets(out_dir)
    cache_info, cache_records = read_targets(local.directory)
    assert beam_info["teacher"] == cache_info["teacher"] and beam_info["mode"] == cache_info["mode"] == mode
    assert sorted(beam_records) == sorted(cache_records) and len(beam_records) == len(files)
    for key, record in beam_records.items():
        np.testing.assert_array_equal(record.audio, cache_records[key].audio)
        assert record.targets.shape == cache_records[key].targets.shape
    keys = sorted(beam_records)
    stacked = [np.concatenate([records[key].targets for key in keys]) for records in (beam_records, cache_records)]
    return parity(stacked[1], stacked[0]), beam_records


def test_direct_runner_with_two_workers_gives_the_local_cache(tmp_path, files, teacher):
    summary = build_targets(files, tmp_path / "beam", teacher="speech_embedding", workers=2, num_shards=2)
    assert summary["records"] == summary["files"] == 10 and summary["unreadable"] == 0
    assert summary["shards"] == ["targets-00000-of-00002.tfrecord", "targets-00001-of-00002.tfrecord"]
    assert summary["padded_clips"] == 8  # the FSDD digits are shorter than the teacher's 12,512-sample window
    scores, records = _compare_with_cache(tmp_path / "beam", tmp_path / "cache", teacher, files, "global")
    assert scores["max_abs_diff"] == 0.0
    assert all(record.targets.shape == (1, 96) for record in records.values())
    # The distiller's reader gives the same training set from either folder.
    from_beam = load_targets(tmp_path / "beam", teacher=teacher)
    from_cache = load_targets(
        cached_targets(teacher, load_clips(find_audio(files)), cache_dir=tmp_path / "cache").directory, teacher=teacher
    )
    assert [item.path for item in from_beam.items] == [item.path for item in from_cache.items] == sorted(files)
    for a, b in zip(from_beam.targets, from_cache.targets):
        np.testing.assert_array_equal(a, b)


def test_distill_trains_from_beam_shards_and_refuses_another_teacher(tmp_path, files, teacher):
    build_targets(files, tmp_path / "beam", teacher="speech_embedding", num_shards=1)
    options = dict(
        student_options={"stem_filters": 8, "filters": (16, 24), "strides": (2, 2)},
        steps=4,
        batch_size=4,
        checkpoint_every=4,
        validation_fraction=0.0,
    )
    record = distill(targets=tmp_path / "beam", out_dir=tmp_path / "run", teacher=teacher, **options)
    assert record["data"]["files"] == 10 and record["data"]["target_mode"] == "global"
    assert record["data"]["source"].startswith("targets ") and os.path.isdir(record["export"])
    with pytest.raises(ParameterError, match="made by teacher 'speech_embedding'.*not by 'other'"):
        distill(targets=tmp_path / "beam", out_dir=tmp_path / "run2", teacher=OtherTeacher(), **options)
    with pytest.raises(ParameterError, match="in 'global' mode, not 'local'"):
        distill(targets=tmp_path / "beam", out_dir=tmp_path / "run3", teacher=teacher, target_mode="local", **options)
    with pytest.raises(ParameterError, match="either data.*or targets"):
        distill(files, targets=tmp_path / "beam", out_dir=tmp_path / "run4", teacher=teacher, **options)
    (tmp_path / "plain").mkdir()  # beside the output: an output inside --targets is refused first
    with pytest.raises(ParameterError, match="not a targets folder"):
        distill(targets=tmp_path / "plain", out_dir=tmp_path / "run5", teacher=teacher, **options)


@pytest.mark.slow
def test_multi_process_direct_runner_local_mode_equals_the_cache(tmp_path, files, teacher):
    summary = build_targets(
        files,
        tmp_path / "beam",
        teacher="speech_embedding",
        mode="local",
        workers=2,
        num_shards=2,
        pipeline_args=["--direct_running_mode=multi_processing"],
    )
    assert summary["records"] == 10 and summary["workers"] == 2
    with open(tmp_path / "beam" / TEACHER_FILE) as handle:
        assert json.load(handle)["pipeline"]["workers"] == 2
    # Local mode stacks the 2 s segments of several clips in one teacher call: the same numbers.
    scores, records = _compare_with_cache(tmp_path / "beam", tmp_path / "cache", teacher, files, "local")
    assert scores["max_abs_diff"] < 1e-5 and scores["min_cosine"] > 0.9999999
    assert sum(len(record.targets) for record in records.values()) == 12  # 8 digits + 2 x 2 segments
    assert all(len(r.targets) == max(1, len(r.audio) // 32000) for r in records.values())


def test_cli_targets_passes_pipeline_options_through(tmp_path, files, capsys):
    out = str(tmp_path / "t")
    argv = ["targets", "--data", FSDD_GLOB, "--out", out, "--num-shards", "1", "--direct_running_mode=in_memory"]
    assert cli.main(argv) == 0
    assert "Wrote targets of 8 of 8 files (global, teacher speech_embedding)" in capsys.readouterr().out
    assert cli.main(argv) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_bad_input_is_refused(tmp_path, monkeypatch):
    with pytest.raises(ParameterError, match=r"No audio matches '.*nothing-\*\.flac'"):
        build_targets(os.path.join(SAMPLE_AUDIO_DIR, "nothing-*.flac"), tmp_path / "out")
    with pytest.raises(ParameterError, match="Cannot start the FooRunner: Unexpected pipeline runner.*DirectRunner"):
        build_targets(FSDD_GLOB, tmp_path / "out", runner="FooRunner")
    with pytest.raises(ParameterError, match="Unknown target mode 'chunk'"):
        build_targets(FSDD_GLOB, tmp_path / "out", mode="chunk")
    with pytest.raises(ParameterError, match="workers must be a positive integer"):
        build_targets(FSDD_GLOB, tmp_path / "out", workers=0)
    if not _module_available("apitools"):  # apache-beam without its [gcp] extra, as installed here
        with pytest.raises(TrillssonError, match=r"no filesystem for gs:// here: pip install 'apache-beam\[gcp\]'"):
            match_audio("gs://bucket/audio/**/*.flac")
        with pytest.raises(TrillssonError, match=r"DataflowRunner needs apache-beam\[gcp\].*pip install"):
            build_targets(
                FSDD_GLOB, tmp_path / "out", runner="DataflowRunner", pipeline_args=["--project=p", "--region=r"]
            )
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # as if the [beam] extra were not installed
    with pytest.raises(TrillssonError, match=r"pip install 'trillsson-tf\[beam\]'"):
        build_targets(FSDD_GLOB, tmp_path / "out")
