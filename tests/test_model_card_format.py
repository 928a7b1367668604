"""The model card format round-trips, reads format 1 cards (both parity shapes) in today's shape, and refuses bad ones."""

import json
import os

import pytest

from trillsson_tf.errors import ParameterError
from trillsson_tf.formats.model_card import (
    CARD_FORMATS,
    ModelCard,
    OutputParity,
    Parity,
    card_path,
    read_card,
    update_card,
    write_card,
)
from trillsson_tf.runtime import read_model_card

SCORES = {"mean_cosine": 0.9991, "min_cosine": 0.9984, "max_abs_diff": 0.0123, "reference_rms": 0.31}
OLD_SINGLE = {  # as converters.tflite wrote it before format 2: one output's scores at the top of parity
    "format": "trillsson_tf.tflite/1",
    "model_file": "t1_int8.tflite",
    "name": "tiny_cnn",
    "quantize": "int8",
    "frontend_inside": True,
    "inputs": [{"name": "audio_samples", "shape": [-1, -1], "dtype": "float32"}],
    "outputs": [{"name": "embedding", "shape": [-1, 32], "dtype": "float32"}],
    "output": "embedding",
    "signature": "serving_default",
    "sample_rate_hz": 16000,
    "frontend": {"sample_rate_hz": 16000, "num_mel_bins": 80},
    "clip_model": None,
    "size_bytes": 194776,
    "tflite_metadata": None,
    "ops": [{"op": "FULLY_CONNECTED", "float": False}],
    "float_ops": ["RFFT2D"],
    "parity": {**SCORES, "clips": 6, "rows": 12, "min_mean_cosine": 0.98, "passed": True, "reference": "Keras model"},
    "source": {"export": None, "parameters": 61516},
    "converter": {"tensorflow": "2.21.0", "fixed_samples": None, "frames": False},
    "licence": "Apache-2.0",
}
OLD_MULTI = {  # as converters.waveform wrote it before format 2: parity per output, nothing at the top
    "format": "trillsson_tf.tflite/1",
    "output": "keyword_logits",
    "output_keys": ["keyword_logits", "speaker_embedding"],
    "fixed_samples": 16000,
    "parity": {
        "outputs": {"keyword_logits": SCORES, "speaker_embedding": {**SCORES, "mean_cosine": 0.97}},
        "clips": 6,
        "min_mean_cosine": 0.98,
        "passed": False,
        "reference": "Keras model",
    },
}


def _card(**change):
    values = dict(
        format=CARD_FORMATS["tflite"],
        model_file="m.tflite",
        name="wav2small",
        quantize="int8",
        output="scores",
        sample_rate_hz=16000,
        clip_model={"frontend": {"n_fft": 64}, "input": "audio", "compression": "log"},
        size_bytes=80123,
        parity=Parity.of(
            {"scores": {**SCORES, "ccc": [0.92, 0.84, 0.98]}},
            clips=6,
            rows=6,
            min_mean_cosine=0.98,
            reference="Keras model",
        ),
        source={"export": "runs/w/export", "teacher": None},
        licence="Apache-2.0",
        extra={"tflite_metadata": None, "fixed_samples": 16000, "layer_errors": [{"layer": "conv", "rmse": 0.01}]},
    )
    return ModelCard(**{**values, **change})


def test_card_round_trips_through_dict_json_and_file(tmp_path):
    card = _card()
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
    path = tmp_path / "m.json"
    written = write_card(path, card)
    assert json.loads(path.read_text()) == written == card.to_dict()
    assert read_card(path) == card
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # written whole, no partial file left


def test_one_parity_shape_per_output_with_the_first_at_the_top():
    values = _card().to_dict()
    parity = values["parity"]
    assert parity["outputs"] == {"scores": {**SCORES, "ccc": [0.92, 0.84, 0.98]}}
    assert {key: parity[key] for key in (*SCORES, "ccc")} == parity["outputs"]["scores"]  # format 1 readers
    assert (parity["clips"], parity["rows"], parity["min_mean_cosine"], parity["passed"]) == (6, 6, 0.98, True)
    assert list(values)[-4:] == ["layer_errors", "parity", "source", "licence"]
    assert values["tflite_metadata"] is None and "quantize" in values and "frontend" not in values  # None: left out


def test_parity_passes_only_when_every_output_does():
    two = {"a": SCORES, "b": {**SCORES, "mean_cosine": 0.97}}
    assert not Parity.of(two, clips=6, min_mean_cosine=0.98, reference="r").passed
    checked = Parity.of(two, clips=6, min_mean_cosine=0.95, reference="r")
    assert checked.passed and checked.first == OutputParity(**SCORES) and checked.rows is None


def test_format_1_single_output_card_reads_in_todays_shape():
    card = ModelCard.from_dict(OLD_SINGLE, where="old.json")
    assert (
        card.format == "trillsson_tf.tflite/2" and card.size_bytes == 194776 and card.extra == {"tflite_metadata": None}
    )
    assert card.parity.outputs == {"embedding": OutputParity(**SCORES)}
    assert (card.parity.clips, card.parity.rows, card.parity.passed) == (6, 12, True)
    values = card.to_dict()
    assert values["parity"] == {"outputs": {"embedding": SCORES}, **OLD_SINGLE["parity"]}
    assert {key: value for key, value in values.items() if key not in ("format", "parity")} == {
        key: value for key, value in OLD_SINGLE.items() if key not in ("format", "parity", "clip_model")
    }
    assert ModelCard.from_dict(values) == card  # and today's shape reads back the same


def test_format_1_multi_output_card_reads_in_todays_shape():
    card = ModelCard.from_dict(OLD_MULTI)
    assert list(card.parity.outputs) == ["keyword_logits", "speaker_embedding"] and not card.parity.passed
    assert card.output_keys == ["keyword_logits", "speaker_embedding"] and card.extra == {"fixed_samples": 16000}
    parity = card.to_dict()["parity"]
    assert parity["mean_cosine"] == SCORES["mean_cosine"] and parity["outputs"] == OLD_MULTI["parity"]["outputs"]


def test_hand_written_card_stays_as_written():
    values = {"sample_rate_hz": 16000, "output": "projection", "frontend": {"num_mel_bins": 80}, "note": "mine"}
    card = ModelCard.from_dict(values)
    assert card.format is None and card.extra == {"note": "mine"} and card.to_dict() == values


def test_runtime_reads_an_old_card_through_the_format(tmp_path):
    model = tmp_path / "old.tflite"
    (tmp_path / "old.json").write_text(json.dumps(OLD_SINGLE))
    card = read_model_card(model)
    assert card["format"] == CARD_FORMATS["tflite"] and card["parity"]["outputs"]["embedding"] == SCORES
    assert read_model_card(tmp_path / "none.tflite") == {}
    assert card_path(model) == os.path.join(tmp_path, "old.json")


@pytest.mark.parametrize(
    "values, match",
    [
        ([1, 2], r"^Model card 'c\.json': must hold a JSON object, got list\.$"),
        ({"output": 3}, r"^Model card 'c\.json': entry 'output' must be a JSON string, got 3\.$"),
        ({"size_bytes": True}, r"entry 'size_bytes' must be a JSON integer, got True"),
        ({"ops": "x"}, r"entry 'ops' must be a JSON array or object"),
        ({"format": "trillsson_tf.tflite/3"}, r"format 'trillsson_tf.tflite/3' is not one .* a newer trillsson_tf"),
        ({"parity": [1]}, r"'parity' must be a JSON object"),
        ({"parity": {"outputs": {}}}, r"'parity.outputs' must be a non-empty JSON object"),
        ({"parity": {"outputs": {"a": {"mean_cosine": 1.0}}}}, r"a parity entry lacks a score"),
    ],
)
def test_bad_cards_are_refused_in_one_line(values, match):
    with pytest.raises(ParameterError, match=match) as caught:
        ModelCard.from_dict(values, where="c.json")
    assert "\n" not in str(caught.value)


def test_unreadable_card_file_is_named(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("{broken")
    with pytest.raises(ParameterError, match=r"^Model card '.*m\.json' cannot be read as JSON"):
        read_card(path)


def test_update_card_sets_entries_and_keeps_the_rest(tmp_path):
    path = tmp_path / "m.json"
    write_card(path, _card())
    errors = [{"layer": "dense", "rmse": 0.2}]
    written = update_card(path, layer_errors=errors, quantize="float16")
    card = read_card(path)
    assert card == _card(quantize="float16", extra={**_card().extra, "layer_errors": errors})
    assert written == card.to_dict()


def test_extra_entries_may_not_shadow_fields():
    with pytest.raises(ParameterError, match=r"extra entries \['parity'\] have fields of their own"):
        ModelCard(extra={"parity": {}})
