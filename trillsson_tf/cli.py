"""The ``trillsson-tf`` command line. Each subcommand calls one library function.

A toolkit error prints its message and exits with status 2, without a traceback.
"""
import argparse
import json
import os
import sys

from trillsson_tf.errors import TrillssonError

DEFAULT_DEMO_STUDENT = "trillsson1"


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

    report = run_demo(args.out, student=args.student, overwrite=args.force)
    print(json.dumps(report, indent=2))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trillsson-tf``."""
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

    demo = sub.add_parser("demo", help="run the main job end to end on the bundled audio")
    demo.add_argument("--out", default=os.path.join("runs", "demo"), help="output directory")
    demo.add_argument("--student", default=DEFAULT_DEMO_STUDENT, help="student name")
    demo.add_argument("--force", action="store_true", help="replace an existing output directory")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    """Entry point of ``trillsson-tf``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except TrillssonError as error:
        print(f"trillsson-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
