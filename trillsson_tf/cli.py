"""The ``trillsson-tf`` command line. Each subcommand calls one library function.

A toolkit error prints its message and exits with status 2, without a traceback.
"""
import argparse
import json
import os
import sys

from trillsson_tf.errors import TrillssonError

def _cmd_models(args):
    from trillsson_tf.models_table import models_table

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
    from trillsson_tf.export import export_savedmodel

    model = models.build(args.name, **({"embedding_dim": args.embedding_dim} if args.embedding_dim else {}))
    path = export_savedmodel(model, args.out_dir, overwrite=args.force)
    print(f"Exported {args.name} ({model.count_params():,} parameters) to {path}")


def _cmd_demo(args):
    from trillsson_tf.demo import run_demo

    options = {"student": args.student} if args.student else {}
    report = run_demo(args.out, overwrite=args.force, progress=True, **options)
    print(json.dumps(report, indent=2))


def _cmd_embed(args):
    from trillsson_tf.runtime import embed_to_file

    summary = embed_to_file(
        args.model, args.inputs, args.out, num_threads=args.num_threads, progress=not args.no_progress, overwrite=args.force
    )
    print(f"Embedded {summary['files']} files ({summary['embedding_dim']}-d) to {summary['out']}")


def _cmd_distill(args):
    from trillsson_tf.distill import distill

    record = distill(
        args.data,
        out_dir=args.out,
        teacher=args.teacher,
        student=args.student,
        output_key=args.teacher_output,
        target_mode=args.target_mode,
        loss=args.loss,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        batch_size=args.batch_size,
        steps=args.steps,
        checkpoint_every=args.checkpoint_every,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        cache_dir=args.cache_dir,
        resume=args.resume,
        overwrite=args.force,
        progress=True,
    )
    if record["data"]["skipped"]:
        print(f"Skipped {len(record['data']['skipped'])} unreadable file(s): {', '.join(record['data']['skipped'])}")
    last = record["loss_history"][-1][1] if record["loss_history"] else float("nan")
    print(f"Distilled {record['student']['name']} ({record['student']['parameters']:,} parameters) from "
          f"{record['teacher']['spec']} in {record['step']} steps, final loss {last:.4g}; exported to {record['export']}")


def _cmd_evaluate(args):
    from trillsson_tf.evaluate import evaluate, format_table

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
    )
    if report["skipped"]:
        print(f"Skipped {len(report['skipped'])} unreadable file(s): {', '.join(report['skipped'])}")
    print(format_table(report))


def _cmd_convert(args):
    from converters.micro import to_micro
    from converters.tflite import convert

    out = args.out if args.out.endswith(".tflite") else os.path.join(args.out, "model.tflite")
    card = convert(
        args.model,
        out,
        quantize=args.quantize,
        frontend=not args.no_frontend,
        fixed_samples=args.fixed_samples,
        representative_audio=args.data,
        min_cosine=args.min_cosine,
        strict=args.strict,
        overwrite=args.force,
    )
    scores = card["parity"]
    print(f"Wrote {out} ({card['size_bytes']:,} bytes, {card['quantize']}); parity on real speech: mean cosine "
          f"{scores['mean_cosine']:.6f}, max abs diff {scores['max_abs_diff']:.3g}; float ops: {card['float_ops'] or 'none'}")
    if args.micro:
        report = to_micro(out, os.path.dirname(os.path.abspath(out)), name=args.micro_name, overwrite=args.force)
        print(f"TFLite Micro: {report['files']['source']}, arena {report['arena_bytes']:,} bytes, ops {report['ops']}")


# Subcommands whose options need a TensorFlow-importing module (for their choices) register their
# arguments only when they are the command being parsed, so `embed` and `--help` stay TensorFlow-free.
_HEAVY_COMMANDS = ("distill", "evaluate", "convert")


def _add_distill_arguments(distill):
    from trillsson_tf.distill import DEFAULT_STUDENT, LOSSES, LR_SCHEDULES
    from trillsson_tf.targets import TARGET_MODES
    from trillsson_tf.teachers import SPEECH_EMBEDDING, TEACHER_FORMS

    distill.add_argument("--data", required=True, help="audio folder (recursive) or CSV manifest path[,label][,speaker]")
    distill.add_argument("--out", required=True, help="run folder (checkpoints, logs, export/, run.json)")
    distill.add_argument("--teacher", default=SPEECH_EMBEDDING, help="one of: " + "; ".join(TEACHER_FORMS))
    distill.add_argument("--teacher-output", default=None, help="teacher output key when it has several")
    distill.add_argument("--student", default=DEFAULT_STUDENT, help="student name (see `trillsson-tf models`)")
    distill.add_argument("--target-mode", default="global", choices=TARGET_MODES, help="clip vector or per-2 s-chunk targets")
    distill.add_argument("--loss", default="mse", choices=LOSSES)
    distill.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    distill.add_argument("--lr-schedule", default="cosine", choices=LR_SCHEDULES)
    distill.add_argument("--batch-size", type=int, default=32)
    distill.add_argument("--steps", type=int, default=2000)
    distill.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    distill.add_argument("--validation-fraction", type=float, default=0.1)
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--cache-dir", default=None, help="teacher-target cache (default ~/.cache/trillsson_tf/targets)")
    distill.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    distill.add_argument("--force", action="store_true", help="replace an existing --out")


def _add_evaluate_arguments(evaluate):
    from trillsson_tf.evaluate import NORMALIZATIONS

    evaluate.add_argument("--model", required=True, help="export folder, SavedModel, Keras, .tflite or hub handle")
    evaluate.add_argument("--data", required=True, help="audio folder or CSV manifest")
    evaluate.add_argument("--teacher", default=None, help="teacher spec, for fidelity and its own probe accuracies")
    evaluate.add_argument("--labels", default=None, help="CSV with a path column and label columns")
    evaluate.add_argument("--tasks", nargs="*", default=None, help="label columns to probe (default: all)")
    evaluate.add_argument("--normalization", default="none", choices=NORMALIZATIONS)
    evaluate.add_argument("--output-key", default=None, help="model output key when it has several")
    evaluate.add_argument("--json", default=None, help="also write the report to this JSON file")


def _add_convert_arguments(convert):
    from converters.tflite import QUANTIZE_MODES

    convert.add_argument("model", help="export directory (from export/distill/optimize) or .keras file")
    convert.add_argument("--out", required=True, help="output .tflite file, or a folder for model.tflite")
    convert.add_argument("--quantize", default="float32", choices=QUANTIZE_MODES)
    convert.add_argument("--no-frontend", action="store_true", help="leave the log-mel frontend out (patch input)")
    convert.add_argument("--fixed-samples", type=int, default=None, help="fix the audio input length, in samples")
    convert.add_argument("--data", default=None, help="representative audio (folder or CSV) for --quantize int8")
    convert.add_argument("--min-cosine", type=float, default=None, help="parity threshold (default: per mode)")
    convert.add_argument("--strict", action="store_true", help="fail when parity is below the threshold")
    convert.add_argument("--micro", action="store_true", help="also write the TFLite Micro C++ array and resolver")
    convert.add_argument("--micro-name", default="g_model", help="C identifier of the array")
    convert.add_argument("--force", action="store_true", help="replace existing outputs")


def build_parser(command=None) -> argparse.ArgumentParser:
    """The argument parser of ``trillsson-tf``.

    ``command`` (the subcommand being run) limits which TensorFlow-importing subcommands get their
    full options; ``None`` builds all of them.
    """
    from trillsson_tf import __version__

    parser = argparse.ArgumentParser(prog="trillsson-tf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list the student zoo: parameters, size, per-chunk GFLOPs")
    models.add_argument("names", nargs="*", help="only these students (default: all)")
    models.add_argument("--no-flops", action="store_true", help="skip the GFLOPs count (faster)")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=_cmd_models)

    export = sub.add_parser("export", help="build a student and export it as a hub-format SavedModel")
    export.add_argument("name", help="student name (see `trillsson-tf models`)")
    export.add_argument("out_dir", help="output directory")
    export.add_argument("--embedding-dim", type=int, default=None, help="output width D (default: the preset's)")
    export.add_argument("--force", action="store_true", help="replace an existing output directory")
    export.set_defaults(func=_cmd_export)

    heavy = {
        "distill": ("distill a teacher into a registry student on cached targets", _add_distill_arguments, _cmd_distill),
        "evaluate": ("fidelity to a teacher and linear probes, model and teacher side by side",
                     _add_evaluate_arguments, _cmd_evaluate),
        "convert": ("convert an export to .tflite (+ model card, optional TFLite Micro C array)",
                    _add_convert_arguments, _cmd_convert),
    }
    for name in _HEAVY_COMMANDS:
        help_text, add_arguments, func = heavy[name]
        subparser = sub.add_parser(name, help=help_text)
        if command in (None, name):
            add_arguments(subparser)
        subparser.set_defaults(func=func)

    demo = sub.add_parser("demo", help="run the main job end to end on the bundled audio")
    demo.add_argument("--out", default=os.path.join("runs", "demo"), help="output directory")
    demo.add_argument("--student", default=None, help="student name (default: the demo's small CNN)")
    demo.add_argument("--force", action="store_true", help="replace an existing output directory")
    demo.set_defaults(func=_cmd_demo)

    embed = sub.add_parser("embed", help="embed audio files with a .tflite model (no TensorFlow needed)")
    embed.add_argument("model", help=".tflite model file")
    embed.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    embed.add_argument("--out", default="embeddings.npy", help="output file, .npy or .csv (default: embeddings.npy)")
    embed.add_argument("--num-threads", type=int, default=None, help="interpreter threads (default: the interpreter's)")
    embed.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    embed.add_argument("--force", action="store_true", help="replace an existing output file")
    embed.set_defaults(func=_cmd_embed)
    return parser


def _command_in(argv):
    """The first non-option word of ``argv`` (the subcommand), or ``None``."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv=None) -> int:
    """Entry point of ``trillsson-tf``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    try:
        args.func(args)
    except TrillssonError as error:
        print(f"trillsson-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
