"""trillsson_tf.optimize: pruning reaches its sparsity, QAT (squeeze-excite included) converts and agrees
with Keras and strips back to the float network, clustering, the scopes load wrapped models, the optimize
pipeline and its CLI (resume, refusals), bad layers and options named, tfmot internals kept in one module."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY_STUDENTS
from trillsson_tf.converters import common, tflite
from trillsson_tf import models, optimize
from trillsson_tf.apps import cli
from trillsson_tf._keras import keras
from trillsson_tf.audio import SAMPLE_AUDIO_DIR
from trillsson_tf.errors import ParameterError, UnsupportedLayerError
from trillsson_tf.formats.weight_grid import on_grid
from trillsson_tf.metrics import parity
from trillsson_tf.optimize import _tfmot, pipeline

LIBRISPEECH = os.path.join(SAMPLE_AUDIO_DIR, "librispeech")


def _tiny_trillsson1(seed: int):
    """A fresh seeded tiny trillsson1 (the session's ``tiny_model`` is shared with other test files)."""
    keras.utils.set_random_seed(seed)
    return models.build("trillsson1", **TINY_STUDENTS["trillsson1"])


def _tiny_efficientnetv2():
    """A two-block EfficientNetV2 (fused MBConv, then MBConv with squeeze-excite) + Dense(16): the layer
    types of the trillsson2/3 students (Rescaling, Multiply, DepthwiseConv2D, stochastic depth) at 61 K parameters."""
    from tf_keras.src.applications.efficientnet_v2 import EfficientNetV2

    from trillsson_tf.models._common import patch_input, projection_head

    keras.utils.set_random_seed(3)
    blocks = [
        {
            "kernel_size": 3,
            "num_repeat": 1,
            "input_filters": 16,
            "output_filters": 16,
            "expand_ratio": 1,
            "se_ratio": 0,
            "strides": 2,
            "conv_type": 1,
        },
        {
            "kernel_size": 3,
            "num_repeat": 1,
            "input_filters": 16,
            "output_filters": 24,
            "expand_ratio": 2,
            "se_ratio": 0.25,
            "strides": 2,
            "conv_type": 0,
        },
    ]
    inputs = patch_input()
    backbone = EfficientNetV2(
        1.0,
        1.0,
        224,
        blocks_args=blocks,
        model_name="tiny_efficientnetv2",
        include_top=False,
        weights=None,
        pooling="avg",
        input_tensor=inputs,
        input_shape=inputs.shape[1:],
    )
    return keras.Model(inputs, projection_head(backbone.output, 16))


@pytest.fixture(scope="module")
def patches(tiny_model):
    """24 real log-mel patches [24, 195, 80, 1] from bundled LibriSpeech speech."""
    return common.log_mel_patch_rows(common.parity_clips(num_clips=8, num_samples=96000), tiny_model.frontend)


@pytest.fixture(scope="module")
def held_out_patches(tiny_model):
    """12 patches of the 6 held-out parity clips (the calibration above uses the first files)."""
    return common.log_mel_patch_rows(common.parity_clips(), tiny_model.frontend)


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
    assert parity(teacher, stripped(patches).numpy())["mean_cosine"] > 0.9


def _depthwise_zeros(tflite_path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    filters = [op["inputs"][1] for op in interpreter._get_ops_details() if op["op_name"] == "DEPTHWISE_CONV_2D"]
    return {index: float(np.mean(interpreter.get_tensor(index) == 0)) for index in filters}


def test_depthwise_kernels_are_pruned_and_keep_their_zeros_through_qat(patches, tmp_path):
    model = models.build("tiny_cnn", embedding_dim=16)
    network = model.chunk_network
    pruned = optimize.apply_pruning(network, sparsity=0.5, end_step=4, frequency=2)
    optimize.recover(pruned, network, patches, steps=6)
    stripped = optimize.strip_pruning(pruned)
    assert type(stripped.get_layer("block1_dw")) is keras.layers.DepthwiseConv2D  # exports need no custom objects
    report = optimize.sparsity_report(stripped)
    assert report["not_prunable"] == []
    assert all(report["layers"][f"block{i}_dw"]["sparsity"] == pytest.approx(0.5, abs=0.02) for i in range(1, 6))
    dense = optimize.sparsity_report(
        optimize.strip_pruning(optimize.apply_pruning(network, sparsity=0.5, depthwise=False))
    )
    assert dense["layers"]["block1_dw"]["sparsity"] == 0 and dense["layers"]["block1_pw"]["sparsity"] == 0

    def qat_sparsity(keep_zeros):
        qat = optimize.apply_qat(stripped, preserve_sparsity=True, calibration_patches=patches)
        optimize.recover(qat, network, patches, steps=20, keep_zeros=keep_zeros)
        return qat, optimize.sparsity_report(qat)["layers"]["block1_dw"]["sparsity"]

    # tfmot does not fake-quantize depthwise weights, so its sparsity-preserving QAT leaves them free to move.
    assert qat_sparsity(keep_zeros=False)[1] < 0.3
    qat, kept = qat_sparsity(keep_zeros=True)
    assert kept == pytest.approx(0.5, abs=0.02)
    tflite.convert(
        optimize.rewrap(model, qat),
        tmp_path / "pruned.tflite",
        quantize="int8",
        frontend=False,
        representative_audio=common.parity_clips(num_clips=4),
    )
    zeros = _depthwise_zeros(tmp_path / "pruned.tflite")
    assert len(zeros) == 5 and min(zeros.values()) >= 0.48


def test_block_sparsity_zeroes_whole_blocks_of_dense_kernels(tiny_model, patches):
    pruned = optimize.apply_pruning(
        tiny_model.chunk_network, sparsity=0.5, schedule="constant", frequency=1, block_size="1x4"
    )
    optimize.recover(pruned, tiny_model.chunk_network, patches, steps=2)
    stripped = optimize.strip_pruning(pruned)
    kernel = stripped.get_layer("projection").kernel.numpy()  # [inputs, 32]
    blocks = kernel.reshape(kernel.shape[0], -1, 4)
    zero_blocks = np.all(blocks == 0, axis=-1)
    assert zero_blocks.mean() == pytest.approx(0.5, abs=0.02)
    assert np.all(np.any(blocks != 0, axis=-1) | zero_blocks)  # no partly zeroed block
    assert optimize.sparsity_report(stripped)["layers"]["stem_conv"]["sparsity"] == pytest.approx(0.5, abs=0.02)


def test_block_sparsity_reaches_pointwise_convolutions_and_strips_back_to_conv2d(patches):
    network = models.build("tiny_cnn", embedding_dim=16).chunk_network
    pruned = optimize.apply_pruning(network, sparsity=0.5, schedule="constant", frequency=1, block_size="4x1")
    optimize.recover(pruned, network, patches, steps=2)
    stripped = optimize.strip_pruning(pruned)
    np.testing.assert_allclose(stripped(patches).numpy(), pruned(patches, training=False).numpy(), atol=1e-5)
    for name in ("block1_pw", "block5_pw", "projection"):
        layer = stripped.get_layer(name)
        kernel = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])  # [inputs, outputs]
        blocks = kernel.reshape(-1, 4, kernel.shape[1])  # four consecutive inputs of one output
        zero_blocks = np.all(blocks == 0, axis=1)
        assert zero_blocks.mean() == pytest.approx(0.5, abs=0.02), name
        assert np.all(np.any(blocks != 0, axis=1) | zero_blocks), name  # no partly zeroed block
    assert type(stripped.get_layer("block1_pw")) is keras.layers.Conv2D  # exports need no custom objects
    assert stripped.get_layer("block1_pw").kernel.shape == network.get_layer("block1_pw").kernel.shape
    report = optimize.sparsity_report(stripped)
    assert report["layers"]["stem_conv"]["sparsity"] == pytest.approx(0.5, abs=0.05)  # 3x3: weight by weight
    assert report["overall"] == pytest.approx(0.5, abs=0.02)


def test_qat_network_converts_and_agrees_with_its_keras_form(patches, held_out_patches, tmp_path):
    # Its own seeded model, and activation ranges calibrated before recovery: with tfmot's [-6, 6]
    # start and 5 steps this agreed at cosine 0.97-0.98, depending on what other tests did to a shared model.
    model = _tiny_trillsson1(seed=1)
    network = model.chunk_network
    qat = optimize.apply_qat(network, calibration_patches=patches)
    optimize.recover(qat, network, patches, steps=10)
    card = tflite.convert(
        optimize.rewrap(model, qat),
        tmp_path / "qat.tflite",
        quantize="int8",
        frontend=False,
        representative_audio=common.parity_clips(num_clips=4),
    )
    assert card["float_ops"] == []
    assert card["parity"]["mean_cosine"] >= 0.999 and card["parity"]["reference_rms"] > 0.05
    int8 = tflite.tflite_embeddings((tmp_path / "qat.tflite").read_bytes(), held_out_patches)
    assert parity(network(held_out_patches).numpy(), int8)["mean_cosine"] >= 0.999  # and it still follows the float net


def test_depthwise_batch_norms_fold_exactly_and_leave_no_int8_mul(patches, tmp_path):
    model = models.build("tiny_cnn", embedding_dim=16)
    network = model.chunk_network
    rng = np.random.default_rng(0)
    for layer in network.layers:  # inference statistics far from the identity, so the fold shows
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.5, 2.0, w.shape) if i in (0, 3) else rng.normal(0.0, 0.5, w.shape)
                    for i, w in enumerate(layer.get_weights())
                ]
            )
    folded = optimize.fold_depthwise_batch_norms(network)
    names = {layer.name for layer in folded.layers}
    assert "block1_dw_bn" not in names and {"block1_pw_bn", "input_norm"} <= names
    assert folded.get_layer("block1_dw").use_bias
    reference = network(patches).numpy()
    assert np.abs(folded(patches).numpy() - reference).max() <= 1e-5 * np.abs(reference).max()
    qat = optimize.apply_qat(network, calibration_patches=patches)
    card = tflite.convert(
        optimize.rewrap(model, qat),
        tmp_path / "qat.tflite",
        quantize="int8",
        frontend=False,
        representative_audio=common.parity_clips(num_clips=4),
    )
    ops = [row["op"] for row in card["ops"]]
    assert ops.count("DEPTHWISE_CONV_2D") == 5 and ops.count("MUL") == 1  # only the input norm's is left
    assert card["float_ops"] == []


def _tfmot_layers(network) -> list:
    return [
        layer.name for layer in network.layers if type(layer).__module__.startswith("tensorflow_model_optimization")
    ]


def _weights_by_name(variables, prefix: str = "") -> dict:
    """``{'kernel': array, ...}`` of the variables named ``<prefix><layer>/<name>:0``."""
    return {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in variables if v.name.startswith(prefix)}


def test_strip_qat_gives_back_the_float_network(patches):
    network = models.build("tiny_cnn", embedding_dim=16).chunk_network
    qat = optimize.apply_qat(network, calibration_patches=patches)
    stripped = optimize.strip_qat(qat)
    assert _tfmot_layers(stripped) == [] and _tfmot_layers(qat) != []
    folded = optimize.fold_depthwise_batch_norms(network)  # what apply_qat quantized
    assert [type(layer) for layer in stripped.layers] == [type(layer) for layer in folded.layers]
    assert [layer.name for layer in stripped.layers] == [layer.name for layer in folded.layers]
    reference = network(patches).numpy()
    assert np.abs(stripped(patches).numpy() - reference).max() <= 1e-5 * np.abs(reference).max()  # the fold is exact


def test_strip_qat_keeps_the_weights_qat_trained(patches, tmp_path):
    network = _tiny_trillsson1(seed=4).chunk_network  # residual Adds, pooling: the rewiring of a real graph
    qat = optimize.apply_qat(network, calibration_patches=patches)
    optimize.recover(qat, network, patches, steps=5)
    stripped = optimize.strip_qat(qat)
    assert _tfmot_layers(stripped) == []
    for wrapper in [layer for layer in qat.layers if hasattr(layer, "layer")]:  # own weights, not the quantizers'
        got = _weights_by_name(stripped.get_layer(wrapper.layer.name).weights)
        want = _weights_by_name(wrapper.weights, prefix=f"{wrapper.layer.name}/")
        assert got.keys() == want.keys() and all(np.array_equal(got[key], want[key]) for key in got), wrapper.name
    kernel = stripped.get_layer("projection").kernel.numpy()
    assert not np.array_equal(kernel, network.get_layer("projection").kernel.numpy())  # trained, not the float input's
    # The QAT network less its int8 rounding: close, not the same.
    with_int8, without = qat(patches).numpy(), stripped(patches).numpy()
    assert parity(with_int8, without)["mean_cosine"] > 0.999
    assert np.abs(with_int8 - without).max() > 1e-3 * np.abs(without).max()
    stripped.save(tmp_path / "float.keras")
    np.testing.assert_array_equal(
        keras.models.load_model(tmp_path / "float.keras")(patches).numpy(), without
    )  # no scope


@pytest.mark.slow
def test_strip_qat_of_cluster_preserving_qat_keeps_the_clusters(tiny_model, patches):
    clustered = optimize.strip_clustering(optimize.apply_clustering(tiny_model.chunk_network, clusters=8))
    cqat = optimize.apply_qat(clustered, preserve_clusters=True, calibration_patches=patches)
    optimize.recover(cqat, clustered, patches, steps=3)
    stripped = optimize.strip_qat(cqat)
    assert _tfmot_layers(stripped) == []
    assert max(layer["unique_values"] for layer in optimize.sparsity_report(stripped)["layers"].values()) <= 8
    assert parity(cqat(patches).numpy(), stripped(patches).numpy())["mean_cosine"] > 0.999


def test_qat_covers_efficientnetv2_squeeze_excite_and_rescaling(patches, held_out_patches):
    network = _tiny_efficientnetv2()
    qat = optimize.apply_qat(network, calibration_patches=patches)
    wrapped = {layer.layer.name: type(layer.layer).__name__ for layer in qat.layers if hasattr(layer, "layer")}
    assert {"Multiply", "Rescaling", "DepthwiseConv2D", "Conv2D", "Dense"} <= set(wrapped.values())
    assert parity(network(held_out_patches).numpy(), qat(held_out_patches).numpy())["mean_cosine"] > 0.999


@pytest.mark.slow
def test_qat_efficientnetv2_converts_to_int8_and_agrees(patches, tmp_path):
    network = _tiny_efficientnetv2()
    qat = optimize.apply_qat(network, calibration_patches=patches)
    optimize.recover(qat, network, patches, steps=10)
    card = tflite.convert(
        models.wrap_chunk_network(qat, name="tiny_efficientnetv2"),
        tmp_path / "e.tflite",
        quantize="int8",
        frontend=False,
        representative_audio=common.parity_clips(num_clips=4),
    )
    assert card["float_ops"] == [] and {"MUL", "LOGISTIC"} <= {row["op"] for row in card["ops"]}
    assert card["parity"]["mean_cosine"] >= 0.999


def test_int4_training_strips_to_the_int4_kernels_it_trained_with(patches):
    network = _tiny_trillsson1(seed=4).chunk_network
    kinds = {layer.name: type(layer).__name__ for layer in network.layers}
    first = next(name for name, kind in kinds.items() if kind == "Conv2D")  # trained, and stored, at int8
    wrapped = optimize.apply_int4_qat(network, int8_layers=[first])
    wrapped_kinds = sorted({kinds[layer.layer.name] for layer in wrapped.layers if hasattr(layer, "quantize_config")})
    assert wrapped_kinds == ["Conv2D", "Dense"]  # depthwise, BatchNormalization, activations: float
    losses = optimize.recover(wrapped, network, patches, steps=6)
    assert losses[-1] < losses[0]
    stripped = optimize.strip_int4_qat(wrapped)
    assert _tfmot_layers(stripped) == [] and [layer.name for layer in stripped.layers] == list(kinds)
    for layer in stripped.layers:
        if kinds[layer.name] in ("Conv2D", "Dense"):
            bits = 8 if layer.name == first else 4
            assert on_grid(layer.get_weights()[0], bits=bits) and not on_grid(layer.get_weights()[0], bits=12 - bits), (
                layer.name
            )
    # The export computes what training computed (BatchNormalization frozen by the recovery): the grid is exact.
    np.testing.assert_allclose(stripped(patches).numpy(), wrapped(patches, training=True).numpy(), atol=1e-5)
    assert parity(network(patches).numpy(), stripped(patches).numpy())["mean_cosine"] > 0.95
    with pytest.raises(ParameterError, match=r"int8_layers names no Conv2D or Dense layer of .*\['nope'\]"):
        optimize.apply_int4_qat(network, int8_layers=["nope"])


def test_clustering_leaves_at_most_that_many_values_per_kernel(tiny_model, patches):
    clustered = optimize.apply_clustering(tiny_model.chunk_network, clusters=8)
    losses = optimize.recover(clustered, tiny_model.chunk_network, patches, steps=10)
    report = optimize.sparsity_report(optimize.strip_clustering(clustered))
    assert max(layer["unique_values"] for layer in report["layers"].values()) <= 8
    assert losses[-1] < losses[0]


def test_wrapped_models_save_and_load_inside_their_scopes(patches, tmp_path):
    network = models.build("tiny_cnn", embedding_dim=16).chunk_network
    pruned = optimize.apply_pruning(network, sparsity=0.5, block_size="4x1")  # depthwise and pointwise-as-Dense layers
    for wrapped, scope in (
        (pruned, optimize.pruning_scope),
        (optimize.apply_clustering(network, clusters=8), optimize.cluster_scope),
    ):
        path = tmp_path / f"{scope.__name__}.keras"
        wrapped.save(path)
        with pytest.raises((ValueError, TypeError)):  # the scope is what makes it load
            keras.models.load_model(path)
        with scope():
            loaded = keras.models.load_model(path)
        np.testing.assert_allclose(loaded(patches).numpy(), wrapped(patches).numpy(), rtol=1e-5, atol=1e-7)


def test_qat_names_the_layer_it_cannot_quantize():
    network = models.build("mobilenetv3small", alpha=0.35).chunk_network
    with pytest.raises(UnsupportedLayerError, match=r"Layer '.*' \(TFOpLambda\) cannot be quantization-aware trained"):
        optimize.apply_qat(network)


def test_bad_pruning_options(tiny_model):
    with pytest.raises(ParameterError, match="sparsity must be in"):
        optimize.apply_pruning(tiny_model.chunk_network, sparsity=1.5)
    with pytest.raises(ParameterError, match=r"Unknown pruning schedule 'cubic'. Expected one of: \['polynomial'"):
        optimize.apply_pruning(tiny_model.chunk_network, sparsity=0.5, schedule="cubic")


def test_tfmot_internals_are_reached_from_one_module_only():
    package = pathlib.Path(optimize.__file__).parents[1]
    sources = list(package.rglob("*.py"))  # trillsson_tf/converters/ included
    touching = sorted(
        str(path.relative_to(package.parent))
        for path in sources
        if re.search(r"tensorflow_model_optimization\.python|quant_ops", path.read_text())
    )
    assert touching == ["trillsson_tf/optimize/_tfmot.py"]


def test_another_tfmot_version_is_warned_about(monkeypatch):
    import tensorflow_model_optimization as tfmot

    _tfmot.import_tfmot.cache_clear()
    monkeypatch.setattr(tfmot, "__version__", "9.9.9")
    try:
        with pytest.warns(
            RuntimeWarning, match=r"checked against tensorflow-model-optimization 0\.8\.1, found 9\.9\.9"
        ):
            _tfmot.import_tfmot()
    finally:
        _tfmot.import_tfmot.cache_clear()


def test_importing_the_package_does_not_import_tfmot():
    code = (
        "import sys, trillsson_tf.optimize; "
        "sys.exit(any(name.startswith('tensorflow_model_optimization') for name in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# The pipeline and its command line, on a tiny trillsson1 export and the bundled LibriSpeech speech.


@pytest.fixture(scope="module")
def source_export(tmp_path_factory):
    """A tiny trillsson1 export with a teacher in its metadata and a distiller-style run.json."""
    from trillsson_tf.models.export import export_savedmodel

    export = export_savedmodel(
        _tiny_trillsson1(seed=2),
        tmp_path_factory.mktemp("source") / "export",
        extra_metadata={"teacher": {"spec": "speech_embedding", "embedding_dim": 32}},
    )
    with open(os.path.join(export, "run.json"), "w") as handle:
        json.dump({"student": {"name": "trillsson1"}, "teacher": {"spec": "speech_embedding"}, "step": 100}, handle)
    return export


@pytest.fixture(scope="module")
def speech_manifest(tmp_path_factory):
    """A CSV manifest of 8 bundled LibriSpeech files (absolute paths)."""
    manifest = tmp_path_factory.mktemp("data") / "speech.csv"
    files = sorted(os.path.join(LIBRISPEECH, name) for name in os.listdir(LIBRISPEECH))[:8]
    manifest.write_text("".join(f"{path}\n" for path in files))
    return str(manifest)


@pytest.fixture(scope="module")
def optimized(source_export, speech_manifest, tmp_path_factory):
    """``trillsson-tf optimize EXPORT --prune 0.5 --qat`` (30 steps a stage), interrupted after the
    checkpoint at pruning step 10, then ``--resume``d; the report, and what the resume restored."""
    out = str(tmp_path_factory.mktemp("optimized") / "run")
    argv = [
        "optimize",
        source_export,
        "--prune",
        "0.5",
        "--qat",
        "--data",
        speech_manifest,
        "--out",
        out,
        "--steps",
        "30",
        "--checkpoint-every",
        "10",
        "--patches",
        "48",
    ]
    real_recover = pipeline.recover
    at_interruption, at_resume = {}, {}

    def interrupted(network, *args, on_checkpoint, **kwargs):
        def save_then_stop(done):
            on_checkpoint(done)
            at_interruption.update(step=done, weights=[w.numpy() for w in network.weights])
            raise KeyboardInterrupt

        return real_recover(network, *args, on_checkpoint=save_then_stop, **kwargs)

    def resumed(network, *args, start_step, **kwargs):
        at_resume.setdefault("start_step", start_step)  # the first stage run again: pruning
        at_resume.setdefault("weights", [w.numpy() for w in network.weights])
        return real_recover(network, *args, start_step=start_step, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "recover", interrupted)
        assert cli.main(argv) == 130  # Ctrl-C: one line, exit 130
        patch.setattr(pipeline, "recover", resumed)
        assert cli.main([*argv, "--resume"]) == 0
    with open(os.path.join(out, optimize.REPORT_FILE)) as handle:
        return {
            "report": json.load(handle),
            "out": out,
            "argv": argv,
            "interrupted": at_interruption,
            "resumed": at_resume,
        }


def test_optimize_prunes_then_quantizes_and_reports(optimized):
    report = optimized["report"]
    assert list(report["stages"]) == ["prune", "qat"]
    for stage in report["stages"].values():
        assert [step for step, _ in stage["loss_curve"]] == [10, 20, 30] and stage["step"] == 30
    layers = report["sparsity"]["layers"]
    assert all(layer["sparsity"] == pytest.approx(0.5, abs=0.02) for layer in layers.values())  # kept through QAT
    assert report["not_prunable"] == []
    assert report["options"]["learning_rate"] == optimize.RECOVERY_LEARNING_RATE  # the default when pruning
    data = report["data"]
    assert data["held_out_files"] >= 1 and data["patches"] == 48 and data["train_files"] + data["held_out_files"] == 8
    assert report["fidelity"]["clips"] == data["held_out_files"] and report["fidelity"]["mean_cosine"] > 0.98


def test_resume_restores_the_interrupted_state(optimized):
    interrupted, resumed = optimized["interrupted"], optimized["resumed"]
    assert interrupted["step"] == 10 and resumed["start_step"] == 10
    assert len(resumed["weights"]) == len(interrupted["weights"])  # weights, masks, thresholds, pruning step
    assert all(np.array_equal(a, b) for a, b in zip(interrupted["weights"], resumed["weights"]))


def test_resume_with_other_options_and_rerun_without_resume_are_refused(optimized, capsys):
    argv = optimized["argv"]
    assert cli.main([*argv[:3], "0.8", *argv[4:], "--resume"]) == 2  # --prune 0.8
    assert "Cannot resume" in capsys.readouterr().err
    assert cli.main(argv) == 2
    assert "exists and is not empty; pass --resume to continue it or --force to replace it" in capsys.readouterr().err


def test_optimized_export_converts_to_int8_and_agrees(optimized, source_export, held_out_patches, tmp_path):
    files = sorted(os.path.join(LIBRISPEECH, name) for name in os.listdir(LIBRISPEECH))[:8]
    card = tflite.convert(
        optimized["report"]["export"],
        tmp_path / "opt.tflite",
        quantize="int8",
        frontend=False,
        representative_audio=files,
    )
    assert card["float_ops"] == []
    assert card["parity"]["mean_cosine"] >= 0.999 and card["parity"]["reference_rms"] > 0.05  # vs its Keras (QAT) form
    source, _ = common.load_keras_model(source_export)
    int8 = tflite.tflite_embeddings((tmp_path / "opt.tflite").read_bytes(), held_out_patches)
    assert (
        parity(source.chunk_network(held_out_patches).numpy(), int8)["mean_cosine"] >= 0.98
    )  # vs the unoptimized float
    # The model card says what was done, and keeps the teacher and the training run of the source.
    assert card["source"]["optimization"]["prune"] == 0.5 and card["source"]["optimization"]["qat"] is True
    assert card["source"]["teacher"]["spec"] == "speech_embedding" and card["source"]["run"]["step"] == 100
    assert card["inputs"][0]["quantization"]["scale"] > 0 and card["sample_rate_hz"] == 16000


def test_cli_refuses_an_existing_output_without_force(source_export, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("user file")
    assert (
        cli.main(["optimize", source_export, "--prune", "0.5", "--data", LIBRISPEECH, "--out", str(tmp_path / "out")])
        == 2
    )
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "--force" in err and "Traceback" not in err
    assert (tmp_path / "out" / "keep.txt").read_text() == "user file"


@pytest.mark.parametrize(
    "argv, match",
    [
        ([], "Nothing to do: ask for prune"),
        (["--prune", "1.5"], r"prune must be a target sparsity in \(0, 1\), got 1.5"),
        (["--prune", "0.5", "--block", "1y4"], "block_size must be two positive integers such as"),
        (["--block", "1x4", "--qat"], "block_size applies to pruning"),
        (["--cluster", "1"], r"cluster must be an integer number of clusters in \[2, 256\], got 1"),
        (["--qat", "--steps", "0"], "steps must be a positive integer, got 0"),
        (["--qat", "--resume"], "Nothing to resume in"),
        (["--qat", "--lr", "0"], "learning_rate must be positive, got 0.0"),
        (["--int4", "--qat"], "int4 .* does not combine with qat"),
        (["--prune", "0.5", "--int8-layers", "stem_conv"], "int8_layers applies to int4 training"),
        (["--int4", "--int8-layers", "stem_conv,nope"], r"int8_layers names no Conv2D or Dense layer .*\['nope'\]"),
    ],
)
def test_cli_bad_options_are_clean_errors(source_export, tmp_path, capsys, argv, match):
    assert cli.main(["optimize", source_export, "--data", LIBRISPEECH, "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err) and "Traceback" not in err


def test_default_learning_rate_depends_on_the_stages():
    def rate(**stages):
        return pipeline._options(
            stages.get("prune"),
            "polynomial",
            None,
            stages.get("qat", False),
            stages.get("cluster"),
            10,
            4,
            None,
            8,
            0.1,
            5,
            0,
        )["learning_rate"]

    assert rate(qat=True) == optimize.QAT_LEARNING_RATE == 1e-4
    assert rate(prune=0.5) == rate(prune=0.5, qat=True) == rate(cluster=16, qat=True) == optimize.RECOVERY_LEARNING_RATE


def test_a_folder_that_is_not_an_export_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="not a trillsson_tf export directory: expected 'model.keras'"):
        optimize.optimize_export(tmp_path, tmp_path / "out", data=LIBRISPEECH, qat=True)
