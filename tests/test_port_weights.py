"""Weight porting: round trip through an exported SavedModel, and honest reports."""

import numpy as np
import pytest

import trillsson_tf
from trillsson_tf.converters.port_weights import port_weights, verify_port
from trillsson_tf import models
from trillsson_tf._keras import tf
from trillsson_tf.errors import WeightPortingError
from trillsson_tf.models.export import load_savedmodel

from conftest import TINY_STUDENTS


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    model = models.build("trillsson1", **TINY_STUDENTS["trillsson1"])
    path = str(tmp_path_factory.mktemp("port") / "source")
    trillsson_tf.export_savedmodel(model, path)
    return model, path


def test_round_trip_restores_the_embedding(source, speech_batch):
    original, path = source
    target = models.build("trillsson1", **TINY_STUDENTS["trillsson1"])
    assert verify_port(path, target, speech_batch)["max_abs_diff"] > 1e-3  # fresh weights differ
    report = port_weights(path, target, strict=True)
    assert report.complete and len(report.matched) == len(target.variables)
    check = verify_port(path, target, speech_batch)
    assert check["max_abs_diff"] <= 1e-5 and check["mean_cosine"] > 0.99999
    np.testing.assert_allclose(target(speech_batch)["embedding"], original(speech_batch)["embedding"], atol=1e-5)


def test_mismatched_architecture_is_reported_variable_by_variable(source):
    _, path = source
    wider = models.build("trillsson1", alpha=0.2, blocks=(1, 1, 1, 1), embedding_dim=32)
    report = port_weights(path, wider)
    assert not report.complete and report.shape_mismatches
    assert any(name.startswith("stem_conv/kernel") for name, *_ in report.shape_mismatches)
    assert "shape mismatch: stem_conv/kernel" in report.summary()
    with pytest.raises(WeightPortingError, match="shape mismatch"):
        port_weights(path, models.build("trillsson1", alpha=0.2, blocks=(1, 1, 1, 1), embedding_dim=32), strict=True)
    deeper = models.build("trillsson1", alpha=0.1, blocks=(2, 1, 1, 1), embedding_dim=32)
    report = port_weights(path, deeper)
    assert any("stage1_block2" in name for name in report.missing)


def test_scoped_source_names_match_by_suffix(source):
    original, path = source
    loaded = load_savedmodel(path)

    class Scoped:
        variables = [tf.Variable(v.numpy(), name=f"published_model/{v.name.split(':')[0]}") for v in loaded.variables]
        variables.append(tf.Variable(np.zeros(3, np.float32), name="published_model/extra_head/bias"))

    target = models.build("trillsson1", **TINY_STUDENTS["trillsson1"])
    report = port_weights(Scoped, target)
    assert report.missing == [] and report.unused == ["published_model/extra_head/bias:0"]
    for got, expected in zip(target.variables, original.variables):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
