"""trillsson_tf.optimize: pruning reaches its sparsity, QAT converts and agrees with Keras, bad layers named."""
import numpy as np
import pytest

from converters import tflite
from trillsson_tf import models, optimize
from trillsson_tf.errors import ParameterError, UnsupportedLayerError


@pytest.fixture(scope="module")
def patches(tiny_model):
    """24 real log-mel patches [24, 195, 80, 1] from bundled LibriSpeech speech."""
    return tflite._patches(tflite.parity_clips(num_clips=8, num_samples=96000), tiny_model.frontend)


def test_pruning_reaches_target_sparsity_and_recovery_follows_the_teacher(tiny_model, patches):
    network = tiny_model.chunk_network
    before = [w.copy() for w in network.get_weights()]
    pruned = optimize.apply_pruning(network, sparsity=0.5, end_step=20, frequency=5)
    losses = optimize.recover(pruned, network, patches, steps=30)
    stripped = optimize.strip_pruning(pruned)
    report = optimize.sparsity_report(stripped)
    assert report["overall"] == pytest.approx(0.5, abs=0.02)
    assert all(layer["sparsity"] == pytest.approx(0.5, abs=0.02) for layer in report["layers"].values())
    assert losses[-1] < max(losses)
    assert all(np.array_equal(a, b) for a, b in zip(before, network.get_weights()))  # input untouched
    teacher = network(patches).numpy()
    cosine = np.mean(np.sum(teacher * stripped(patches).numpy(), 1) / (
        np.linalg.norm(teacher, axis=1) * np.linalg.norm(stripped(patches).numpy(), axis=1)))
    assert cosine > 0.9


def test_sparsity_report_names_depthwise_layers_as_not_prunable():
    network = models.build("tiny_cnn", embedding_dim=16).chunk_network
    report = optimize.sparsity_report(network)
    assert "block1_dw" in report["not_prunable"]


def test_qat_network_converts_and_agrees_with_its_keras_form(tiny_model, patches, tmp_path):
    qat = optimize.apply_qat(tiny_model.chunk_network)
    optimize.recover(qat, tiny_model.chunk_network, patches, steps=5)
    card = tflite.convert(optimize.rewrap(tiny_model, qat), tmp_path / "qat.tflite", quantize="int8", frontend=False,
                          representative_audio=tflite.parity_clips(num_clips=4))
    assert card["float_ops"] == []
    assert card["parity"]["mean_cosine"] >= 0.99 and card["parity"]["reference_rms"] > 0.05


def test_qat_names_the_layer_it_cannot_quantize():
    network = models.build("mobilenetv3small", alpha=0.35).chunk_network
    with pytest.raises(UnsupportedLayerError, match=r"Layer '.*' \(TFOpLambda\) cannot be quantization-aware trained"):
        optimize.apply_qat(network)


def test_bad_pruning_options(tiny_model):
    with pytest.raises(ParameterError, match="sparsity must be in"):
        optimize.apply_pruning(tiny_model.chunk_network, sparsity=1.5)
    with pytest.raises(ParameterError, match=r"Unknown pruning schedule 'cubic'. Expected one of: \['polynomial'"):
        optimize.apply_pruning(tiny_model.chunk_network, sparsity=0.5, schedule="cubic")
