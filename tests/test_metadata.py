"""trillsson_tf.converters.metadata: TFLite Model Metadata written into .tflite files and read back through the same schema."""

import logging
import io
import os
import shutil
import zipfile

import numpy as np
import pytest

from trillsson_tf.converters import metadata, tflite
from trillsson_tf import litert
from trillsson_tf.errors import ParameterError
from trillsson_tf.runtime import TFLiteModel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAV2SMALL = os.path.join(REPO, "android_demo_assets", "wav2small_int8.tflite")  # scores [-1, 3], audio in
FIELDS = {
    "name": "wav2small_int8",
    "description": "A/D/V scores",
    "version": "9.8.7",
    "author": "Tester",
    "licence": "Apache-2.0 (test)",
}


@pytest.fixture(scope="module")
def plain():
    with open(WAV2SMALL, "rb") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def written(plain):
    return metadata.with_metadata(
        plain,
        **FIELDS,
        inputs={"audio_samples": "audio in"},
        outputs={"scores": "A/D/V"},
        sample_rate_hz=16000,
        channels=1,
        labels={"scores": ["arousal", "dominance", "valence"]},
    )


def test_every_field_round_trips(written):
    read = metadata.read_metadata(written)
    assert {key: read[key] for key in FIELDS} == FIELDS
    assert read["min_parser_version"] == "1.3.0"  # AudioProperties came in schema 1.3.0
    assert read["inputs"] == [
        {
            "name": "audio_samples",
            "description": "audio in",
            "content": "audio",
            "sample_rate_hz": 16000,
            "channels": 1,
            "associated_files": [],
        }
    ]
    assert read["outputs"] == [
        {
            "name": "scores",
            "description": "A/D/V",
            "content": "feature",
            "associated_files": [{"name": "scores_labels.txt", "type": 2}],
        }
    ]  # 2: TENSOR_AXIS_LABELS
    assert read["files"] == {"scores_labels.txt": "arousal\ndominance\nvalence\n"}
    # The labels are a stored zip behind the flatbuffer, as TFLite Support's populator writes them.
    with zipfile.ZipFile(io.BytesIO(written)) as archive:
        assert [info.compress_type for info in archive.infolist()] == [zipfile.ZIP_STORED]


def test_litert_and_the_runtime_still_run_the_file(plain, written, tmp_path):
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, (1, 24000)).astype(np.float32)
    outputs = []
    for content in (plain, written):
        runner = litert.make_interpreter(model_content=content, num_threads=1).get_signature_runner("serving_default")
        outputs.append(runner(audio_samples=audio)["scores"])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    path = tmp_path / "wav2small_int8.tflite"
    path.write_bytes(written)
    shutil.copyfile(
        WAV2SMALL.replace(".tflite", ".json"), tmp_path / "wav2small_int8.json"
    )  # the card the runtime reads
    np.testing.assert_array_equal(TFLiteModel(str(path), num_threads=1)(audio[0])["scores"], outputs[0])


def test_writing_again_replaces_the_metadata(written):
    again = metadata.with_metadata(
        written, **{**FIELDS, "version": "2"}, inputs={"audio_samples": "a"}, outputs={"scores": "b"}
    )
    read = metadata.read_metadata(again)
    assert read["version"] == "2" and read["files"] == {} and read["inputs"][0]["content"] == "feature"
    assert read["min_parser_version"] == "1.0.0"
    with open(os.path.join(REPO, "android_demo_assets", "embedding_int8.tflite"), "rb") as handle:
        assert metadata.read_metadata(handle.read()) is None  # converted before metadata was written


def test_descriptions_must_match_the_tensors(plain):
    with pytest.raises(ParameterError, match=r"the model has inputs \['audio_samples'\] and outputs \['scores'\]"):
        metadata.with_metadata(plain, **FIELDS, inputs={"audio": "x"}, outputs={"scores": "y"})
    with pytest.raises(ParameterError, match=r"Labels given for \['logits'\]"):
        metadata.with_metadata(
            plain, **FIELDS, inputs={"audio_samples": "x"}, outputs={"scores": "y"}, labels={"logits": ["a"]}
        )


def test_requests_are_checked():
    with pytest.raises(ParameterError, match=r"Unknown metadata field\(s\) \['licence_url'\]. Expected some of"):
        metadata.check_request({"licence_url": "x"}, model_sample_rate_hz=16000)
    with pytest.raises(ParameterError, match="Metadata sample rate 44100 Hz differs from the model's 16000 Hz"):
        metadata.check_request({"sample_rate_hz": 44100}, model_sample_rate_hz=16000)
    assert metadata.check_request({"sample_rate_hz": 16000, "author": "me"}, model_sample_rate_hz=16000) == {
        "author": "me"
    }


def test_score_labels_take_the_teachers_names_when_they_fit():
    teacher = {"score_names": ["loudness_range", "pitch", "tilt"]}
    assert metadata.score_labels(teacher, 3) == ["loudness_range", "pitch", "tilt"]
    assert metadata.score_labels(teacher, 2) == ["score_0", "score_1"]
    assert metadata.score_labels(None, 1) == ["score_0"]


def test_convert_writes_metadata_and_the_mediapipe_form(tiny_model, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="trillsson_tf.converters"):
        card = tflite.convert(tiny_model, tmp_path / "mp.tflite", mediapipe=True, tflite_metadata={"author": "Lab"})
    assert "fixing it to [1, 32000] samples" in caplog.text
    assert card["inputs"][0]["shape"] == [1, tflite.MEDIAPIPE_SAMPLES] and card["parity"]["passed"]
    read = metadata.read_metadata((tmp_path / "mp.tflite").read_bytes())
    assert (read["author"], read["name"], read["inputs"][0]["sample_rate_hz"], read["inputs"][0]["channels"]) == (
        "Lab",
        tiny_model.name,
        16000,
        1,
    )
    assert read["inputs"][0]["description"].endswith("shape [1, 32000]")
    assert card["tflite_metadata"]["author"] == "Lab" and card["tflite_metadata"]["labels"] is None
    card = tflite.convert(tiny_model, tmp_path / "mp2.tflite", mediapipe=True, fixed_samples=16000)
    assert card["inputs"][0]["shape"] == [1, 16000]


def test_patch_models_carry_feature_metadata_and_mediapipe_needs_audio(tiny_model, tmp_path):
    tflite.convert(tiny_model, tmp_path / "patch.tflite", frontend=False)
    read = metadata.read_metadata((tmp_path / "patch.tflite").read_bytes())
    assert read["inputs"][0]["content"] == "feature" and read["inputs"][0]["name"] == "log_mel_patch"
    with pytest.raises(ParameterError, match="The MediaPipe form takes audio"):
        tflite.convert(tiny_model, tmp_path / "bad.tflite", frontend=False, mediapipe=True)
    with pytest.raises(ParameterError, match="differs from the model's 16000 Hz"):
        tflite.convert(tiny_model, tmp_path / "bad.tflite", tflite_metadata={"sample_rate_hz": 8000})
    assert not (tmp_path / "bad.tflite").exists()


def test_a_scores_student_gets_its_labels_file(tmp_path):
    from trillsson_tf import models

    model = models.build("wav2small", filters=(8, 8), pools=((1, 2), (2, 2)))
    card = tflite.convert(model, tmp_path / "w.tflite", mediapipe=True)
    read = metadata.read_metadata((tmp_path / "w.tflite").read_bytes())
    assert read["files"] == {"scores_labels.txt": "score_0\nscore_1\nscore_2\n"}
    assert card["tflite_metadata"]["labels"] == {"scores": ["score_0", "score_1", "score_2"]}
