"""Configs: one source for the library's and the CLI's options, checked once."""

import argparse
import dataclasses
import json

import pytest

from trillsson_tf import checks
from trillsson_tf.configs import (
    DistillConfig,
    FinetuneConfig,
    LayerDistillConfig,
    add_arguments,
    as_record,
    from_args,
    make_config,
)
from trillsson_tf.errors import ParameterError


def test_cli_defaults_are_the_configs():
    from trillsson_tf.apps import cli

    args = cli.build_parser("distill").parse_args(["distill", "--data", "x", "--out", "y"])
    assert from_args(DistillConfig, args) == DistillConfig()
    parser = argparse.ArgumentParser()
    add_arguments(parser, DistillConfig)
    parsed = parser.parse_args(
        [
            "--batch-size",
            "8",
            "--teacher-output",
            "scores",
            "--no-mixed-precision",
            "--shuffle-buffer",
            "5",
            "--loss",
            "cosine",
        ]
    )
    config = from_args(DistillConfig, parsed)
    assert (config.batch_size, config.output_key, config.mixed_precision, config.shuffle_buffer, config.loss) == (
        8,
        "scores",
        False,
        5,
        "cosine",
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--loss", "huber"])


def test_distill_layers_cli_defaults_are_the_configs():
    from trillsson_tf.apps import cli

    parser = cli.build_parser("distill-layers")
    args = parser.parse_args(["distill-layers", "--data", "x", "--out", "y"])
    assert from_args(LayerDistillConfig, args) == LayerDistillConfig()
    args = parser.parse_args(
        ["distill-layers", "--data", "x", "--out", "y", "--width", "48", "--lr-schedule", "constant"]
    )
    config = from_args(LayerDistillConfig, args, student_options={"width": args.width})
    assert config.student_options == {"width": 48} and config.lr_schedule == "constant"


def test_finetune_cli_defaults_are_the_configs():
    from trillsson_tf.apps import cli

    parser = cli.build_parser("finetune")
    args = parser.parse_args(["finetune", "exp", "--data", "x", "--out", "y"])
    assert from_args(FinetuneConfig, args) == FinetuneConfig()  # the CLI once defaulted to no task at all
    args = parser.parse_args(
        [
            "finetune",
            "exp",
            "--data",
            "x",
            "--out",
            "y",
            "--kws-labels",
            "none",
            "--uniform-batches",
            "--freeze-encoder",
        ]
    )
    config = from_args(FinetuneConfig, args)
    assert (config.kws_labels, config.balance_batches, config.freeze_encoder) == (None, False, True)
    assert config.resolved_head_steps == config.steps  # frozen: every step trains the heads only
    assert FinetuneConfig(steps=90).resolved_head_steps == 30
    with pytest.raises(ParameterError, match="Give at least one task"):
        FinetuneConfig(kws_labels=None, sv_labels=None)
    with pytest.raises(ParameterError, match=r"head_steps must be an integer in \[0, steps=10\], got 11"):
        FinetuneConfig(steps=10, head_steps=11)
    with pytest.raises(ParameterError, match=r"margin must be in \[0, pi/2\)"):
        FinetuneConfig(margin=2.0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": 0}, "steps must be a positive integer, got 0"),
        ({"batch_size": True}, "batch_size must be a positive integer, got True"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be in \[0, 1\), got 1.0"),
        ({"lr": -1.0}, "lr must be a number > 0"),
        ({"ccc_weight": -0.5}, "ccc_weight must be a number >= 0"),
        ({"loss": "huber"}, r"Unknown loss 'huber'. Expected one of: \['mse', 'cosine', 'l1'\]"),
        ({"target_mode": "frames"}, "Unknown target_mode 'frames'"),
        ({"augment": -1}, "augment must be a number of views >= 0"),
        ({"shuffle_buffer": 0}, "shuffle_buffer must be a positive integer"),
    ],
)
def test_bad_values_are_refused_once_in_one_line(change, message):
    with pytest.raises(ParameterError, match=message) as error:
        DistillConfig(**change)
    assert "\n" not in str(error.value)
    with pytest.raises(ParameterError, match=message):
        make_config(DistillConfig, DistillConfig(), **change)  # overrides go through the same checks


def test_unknown_options_and_wrong_configs_are_named():
    with pytest.raises(ParameterError, match=r"Unknown option\(s\) \['learning_rate'\] for DistillConfig"):
        make_config(DistillConfig, learning_rate=0.1)
    with pytest.raises(ParameterError, match="config must be a DistillConfig"):
        make_config(DistillConfig, {"steps": 3})
    assert make_config(DistillConfig, DistillConfig(steps=7), seed=3) == DistillConfig(steps=7, seed=3)


def test_configs_are_frozen_and_recorded_as_json():
    config = DistillConfig(student_options={"stem_filters": 4})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 3

    class Teacher:
        spec = "my-teacher"

    record = as_record(dataclasses.replace(config, teacher=Teacher()))
    assert record["teacher"] == "my-teacher" and record["student_options"] == {"stem_filters": 4}
    assert json.loads(json.dumps(record)) == record


def test_checks_accept_what_they_should():
    for check, value in (
        (checks.positive_int, 3),
        (checks.non_negative_int, 0),
        (checks.positive, 0.5),
        (checks.non_negative, 0),
        (checks.fraction, 0.0),
        (checks.optional(checks.positive_int), None),
    ):
        check("x", value)
    for check, value in (
        (checks.positive_int, 2.0),
        (checks.non_negative_int, -1),
        (checks.positive, 0),
        (checks.fraction, float("nan")),
        (checks.non_negative, float("nan")),
    ):
        with pytest.raises(ParameterError, match="^x must be"):
            check("x", value)
