"""Fault and bad-input campaign: replays issue 39's faults against the command line and counts held / failed / lost.

Each case runs real ``trillsson-tf`` commands in fresh processes on a scratch copy of real speech
(``trillsson_tf/sample_audio``), as a user would: kills, Ctrl-C, a full disk (a 2 MB tmpfs, root
only; skipped otherwise), damaged files, two processes at once, threads. A case *holds* when the
command does what it should (a refusal is one line, exit 2, naming the file or option; a skip is
named; a resume finishes with every logged step); it *loses data* when a file the user gave or an
earlier result changed or vanished.

    .venv/bin/python benchmarks/fault_benchmark.py            # about 5 minutes on 2 cores

Writes ``benchmarks/results/fault_benchmark.{json,md}`` and prints the markdown.
"""

import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
FSDD = os.path.join(REPO, "trillsson_tf", "sample_audio", "fsdd")
SMALL = ["--student", "tiny_cnn", "--batch-size", "8", "--validation-fraction", "0"]


def cli(*args, cwd=None, wait=True, env=None):
    """``trillsson-tf ARGS`` in a fresh process: ``(returncode, stdout, stderr)``, or the Popen when not ``wait``."""
    command = [sys.executable, "-m", "trillsson_tf.apps.cli", *map(str, args)]
    env = {**os.environ, "TQDM_DISABLE": "1", **(env or {})}
    if not wait:
        # SIGINT as at a terminal even when this script runs in the background (where it is ignored, and inherited).
        return subprocess.Popen(
            command,
            cwd=cwd or REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    done = subprocess.run(command, cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr


def error_lines(stderr):
    """The lines of ``stderr`` that report an error (warnings about skipped files are not errors)."""
    return [line for line in stderr.splitlines() if "error" in line.lower() or "Traceback" in line]


def one_line_error(result, *words):
    """Exit 2 (or the code given), exactly one error line, holding every word of ``words``."""
    code, _, stderr = result
    lines = error_lines(stderr)
    return code == 2 and len(lines) == 1 and "Traceback" not in stderr and all(word in lines[0] for word in words)


def digest(paths):
    """``{path: sha256}`` of every file under ``paths`` (files or folders)."""
    found = {}
    for path in paths:
        files = [path] if os.path.isfile(path) else glob.glob(os.path.join(path, "**", "*"), recursive=True)
        for name in files:
            if os.path.isfile(name):
                with open(name, "rb") as handle:
                    found[name] = hashlib.sha256(handle.read()).hexdigest()
    return found


class Campaign:
    """The scratch workspace, a small finished run and its ``.tflite``, and the case results."""

    def __init__(self, work, only=None):
        self.work, self.rows, self.only = work, [], only
        self.data = os.path.join(work, "data")
        shutil.copytree(FSDD, self.data)
        self.cache = os.path.join(work, "cache")
        self.run = os.path.join(work, "run")
        code, _, err = self.distill(self.run, "20", "--checkpoint-every", "10")
        assert code == 0, err
        self.export = os.path.join(self.run, "export")
        self.tflite = os.path.join(work, "model.tflite")
        code, _, err = cli("convert", self.export, "--out", self.tflite)
        assert code == 0, err

    def case(self, name, fault, check, *, keep=()):
        """Run ``check() -> bool or (bool, note)`` (``None``: skipped); ``keep``: user files that must stay unchanged."""
        if self.only and self.only not in name:
            return
        before = digest(keep)
        began = time.perf_counter()
        try:
            held, note = check(), ""
            if isinstance(held, tuple):
                held, note = held
        except Exception as error:  # a case that crashes counts as failed, with its reason
            held, note = False, f"{type(error).__name__}: {error}"[:200]
        lost = sorted(path for path, sha in before.items() if digest([path]).get(path) != sha)
        row = {
            "case": name,
            "fault": fault,
            "held": held,
            "lost": len(lost),
            "seconds": time.perf_counter() - began,
            "note": note or (f"changed: {lost[:3]}" if lost else ""),
        }
        self.rows.append(row)
        print(
            f"{'skip' if held is None else 'held' if held and not lost else 'FAIL'}  {name}  {row['note']}", flush=True
        )

    def distill(self, out, steps, *extra, data=None, cache=None, wait=True):
        """``trillsson-tf distill`` of the campaign's clips (or ``data``) with its small student and cache."""
        return cli(
            "distill",
            "--data",
            data or self.data,
            "--out",
            out,
            "--cache-dir",
            cache or self.cache,
            "--steps",
            steps,
            *SMALL,
            *extra,  # after SMALL: the last occurrence of an option wins
            wait=wait,
        )

    def copy_run(self, name):
        target = os.path.join(self.work, name)
        shutil.copytree(self.run, target)
        return target


def cases(c: Campaign):
    wavs = sorted(glob.glob(os.path.join(c.data, "*.wav")))

    def threads():
        import numpy as np

        from trillsson_tf.audio import load_audio
        from trillsson_tf.runtime import TFLiteModel

        model, clips = TFLiteModel(c.tflite), [load_audio(path)[None] for path in wavs[:8]]
        expected = [model(clip)["embedding"] for clip in clips]
        wrong = []

        def call(worker):
            for repeat in range(25):
                index = (worker + repeat) % len(clips)
                if not np.array_equal(model(clips[index])["embedding"], expected[index]):
                    wrong.append(index)

        pool = [threading.Thread(target=call, args=(worker,)) for worker in range(8)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return not wrong

    c.case("TFLiteModel from 8 threads", "1: not thread-safe", threads)
    c.case(
        "distill --data X --out X --force",
        "2: --force deletes inputs",
        lambda: one_line_error(
            cli("distill", "--data", c.data, "--out", c.data, "--force", "--steps", "2", *SMALL), "--data"
        ),
        keep=[c.data],
    )
    c.case(
        "optimize EXP --out EXP --force",
        "2: --force deletes inputs",
        lambda: one_line_error(
            cli("optimize", c.export, "--data", c.data, "--out", c.export, "--prune", "0.5", "--force"), "export"
        ),
        keep=[c.export],
    )
    report = os.path.join(c.work, "report.json")
    with open(report, "w") as handle:
        handle.write('{"mine": true}')
    c.case(
        "evaluate --json onto a file",
        "3: overwrites without asking",
        lambda: one_line_error(cli("evaluate", "--model", c.export, "--data", c.data, "--json", report), "report.json"),
        keep=[report],
    )
    sidecar = os.path.join(c.work, "vectors.files.txt")
    with open(sidecar, "w") as handle:
        handle.write("mine\n")
    c.case(
        "embed --out over a sidecar",
        "3: overwrites without asking",
        lambda: one_line_error(
            cli("embed", c.tflite, *wavs[:3], "--out", os.path.join(c.work, "vectors.npy")), "vectors.files.txt"
        ),
        keep=[sidecar],
    )

    def empty_record():
        run = c.copy_run("empty_record")
        open(os.path.join(run, "run.json"), "w").close()
        return one_line_error(
            c.distill(run, "30", "--checkpoint-every", "10", "--resume"),
            "run.json",
        )

    c.case("--resume on a 0-byte run.json", "4: files written in place", empty_record)

    def killed():
        run = os.path.join(c.work, "killed")
        process = c.distill(run, "4000", "--checkpoint-every", "5", wait=False)
        deadline = time.time() + 300
        # The manager keeps 3 checkpoints: wait for any from step 15 on, not for one that may be gone.
        while time.time() < deadline and not [
            name
            for name in glob.glob(os.path.join(run, "checkpoints", "ckpt-*.index"))
            if int(name.rsplit("-", 1)[1].split(".")[0]) >= 15
        ]:
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait()
        code, _, err = c.distill(run, "80", "--checkpoint-every", "5", "--resume")
        with open(os.path.join(run, "run.json")) as handle:
            record = json.load(handle)
        steps = [point[0] for point in record["loss_history"]]
        return code == 0 and steps == list(range(10, 81, 10)), f"logged steps {steps}"

    c.case("SIGKILL mid-run, then --resume", "4: kill between checkpoint and record", killed)

    def missing_index():
        run = c.copy_run("missing_index")
        os.remove(os.path.join(run, "checkpoints", "ckpt-20.index"))
        code, _, _ = c.distill(run, "30", "--checkpoint-every", "10", "--resume")
        with open(os.path.join(run, "run.json")) as handle:
            record = json.load(handle)
        return (
            code == 0 and record["resumed_from_step"] == 10 and [p[0] for p in record["loss_history"]] == [10, 20, 30]
        )

    c.case("--resume with ckpt .index missing", "5: silent restart from step 0", missing_index)
    for option, value in (
        ("--batch-size", "4"),
        ("--seed", "3"),
        ("--shuffle-buffer", "5"),
        ("--validation-fraction", "0.3"),
    ):

        def changed(option=option, value=value):
            run = c.copy_run(f"changed{option}")
            return one_line_error(
                c.distill(run, "30", "--checkpoint-every", "10", "--resume", option, value),
                option.lstrip("-").replace("-", "_"),
            )

        c.case(f"--resume with another {option}", "5: resume that does not refuse", changed)

    def files_added():
        run, more = c.copy_run("files_added"), os.path.join(c.work, "more")
        shutil.copytree(c.data, more)
        shutil.copy(wavs[0], os.path.join(more, "extra_copy.wav"))
        return one_line_error(
            c.distill(run, "30", "--checkpoint-every", "10", "--resume", data=more),
            "training_records",
        )

    c.case("--resume with a file added to --data", "5: resume that does not refuse", files_added)

    def bad_shard(kind):
        def check():
            cache = os.path.join(c.work, f"cache_{kind}")
            shutil.copytree(c.cache, cache)
            shard = sorted(glob.glob(os.path.join(cache, "*", "targets-*.tfrecord")))[0]
            with open(shard, "r+b") as handle:
                if kind == "truncated":
                    handle.truncate(os.path.getsize(shard) // 2)
                else:
                    handle.seek(os.path.getsize(shard) // 2)
                    handle.write(b"\xff" * 16)
            code, _, err = c.distill(os.path.join(c.work, f"run_{kind}"), "5", cache=cache)
            return code == 0 and os.path.basename(shard) in err

        return check

    c.case("distill --data, a truncated cache shard", "6: target cache on the --data path", bad_shard("truncated"))
    c.case("distill --data, a bit-flipped cache shard", "6: target cache on the --data path", bad_shard("flipped"))

    def concurrent():
        run = os.path.join(c.work, "concurrent")
        first = c.distill(run, "200", wait=False)
        while not os.path.exists(os.path.join(run, ".trillsson-tf.lock")) and first.poll() is None:
            time.sleep(0.2)
        second = c.distill(run, "5", "--force")
        first.wait()
        return first.returncode == 0 and one_line_error(second, "in use by another")

    c.case("two distill into one --out", "7: no run-folder lock", concurrent)

    def nan_wav():
        import numpy as np
        import soundfile

        folder = os.path.join(c.work, "with_nan")
        shutil.copytree(c.data, folder)
        bad = os.path.join(folder, "zz_nan.wav")
        soundfile.write(bad, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
        code, _, err = cli("embed", c.tflite, folder, "--out", os.path.join(c.work, "nan.npy"))
        return code == 0 and "zz_nan.wav" in err

    c.case("embed a folder with a NaN WAV", "8: one bad file aborts a batch", nan_wav)
    manifest = os.path.join(c.work, "latin1.csv")
    with open(manifest, "wb") as handle:
        handle.write(b"path,speaker\n" + f"{wavs[0]},Jos\xe9\n".encode("latin-1"))
    c.case(
        "distill --data non-UTF-8 CSV",
        "9: traceback instead of one line",
        lambda: one_line_error(
            cli("distill", "--data", manifest, "--out", os.path.join(c.work, "csv_run"), "--steps", "2", *SMALL),
            "latin1.csv",
        ),
        keep=[manifest],
    )
    existing = os.path.join(c.work, "taken.txt")
    with open(existing, "w") as handle:
        handle.write("mine")
    c.case(
        "export onto an existing file",
        "9: traceback instead of one line",
        lambda: one_line_error(cli("export", "tiny_cnn", existing), "taken.txt"),
        keep=[existing],
    )

    def full_disk():
        disk = os.path.join(c.work, "tiny_disk")
        os.makedirs(disk)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk], capture_output=True).returncode:
            return None
        try:
            with open(os.path.join(disk, "filler"), "wb") as handle:
                handle.write(b"\0" * (2 * 1024 * 1024 - 64 * 1024))
            result = cli("convert", c.export, "--out", os.path.join(disk, "model.tflite"))
            return one_line_error(result, "No space left") and not os.path.exists(os.path.join(disk, "model.tflite"))
        finally:
            subprocess.run(["umount", disk], capture_output=True)

    c.case("convert onto a full disk", "9: traceback instead of one line", full_disk)

    def ctrl_c():
        run = os.path.join(c.work, "interrupted")
        process = c.distill(run, "4000", "--checkpoint-every", "5", wait=False)
        while not glob.glob(os.path.join(run, "checkpoints", "ckpt-*.index")) and process.poll() is None:
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        code, _, _ = c.distill(run, "80", "--checkpoint-every", "5", "--resume")
        held = process.returncode == 130 and len(error_lines(err)) == 1 and "--resume" in lines[-1] and code == 0
        return held, "" if held else f"exit {process.returncode}, then {code}; stderr ends {lines[-2:]}"

    c.case("Ctrl-C during distill, then --resume", "9: traceback instead of one line", ctrl_c)

    def absurd_rate():
        from trillsson_tf.errors import ParameterError
        from trillsson_tf.runtime import TFLiteModel

        import numpy as np

        try:
            TFLiteModel(c.tflite)(np.zeros(16000, np.float32), sample_rate=10**9)
        except ParameterError:
            return True
        return False

    c.case("TFLiteModel call with sample_rate=1e9", "9: traceback instead of one line", absurd_rate)

    def help_without_tensorflow():
        probe = (
            "import sys; from trillsson_tf.apps import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint('TF' if 'tensorflow' in sys.modules else 'no TF', file=sys.stderr)"
        )
        done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
        return done.stderr.strip().endswith("no TF")

    c.case("trillsson-tf --help", "11: imports TensorFlow", help_without_tensorflow)


def to_markdown(report):
    rows = report["rows"]
    counted = [row for row in rows if row["held"] is not None]
    held = sum(1 for row in counted if row["held"] and not row["lost"])
    lines = [
        "# Fault campaign: issue 39's faults replayed at the command line",
        "",
        f"{len(counted)} cases run ({len(rows) - len(counted)} skipped), {report['date']}, 2-core CPU, "
        f"`benchmarks/fault_benchmark.py`: **{held} held, {len(counted) - held} failed, "
        f"{sum(row['lost'] for row in rows)} files lost**.",
        "",
        "| case | fault (issue 39 root cause) | result | s |",
        "|---|---|---|---:|",
    ]
    for row in rows:
        result = "skipped" if row["held"] is None else "held" if row["held"] and not row["lost"] else "**failed**"
        note = f" ({row['note']})" if row["note"] else ""
        lines.append(f"| {row['case']} | {row['fault']} | {result}{note} | {row['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the cases whose name holds this text (results not written)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fault_benchmark_") as work:
        campaign = Campaign(work, only=args.only)
        cases(campaign)
        if args.only:
            return campaign.rows
        report = {"date": time.strftime("%Y-%m-%d"), "rows": campaign.rows}
    os.makedirs(RESULTS, exist_ok=True)
    from trillsson_tf.folders import write_atomic, write_json

    write_json(os.path.join(RESULTS, "fault_benchmark.json"), report)
    markdown = to_markdown(report)
    write_atomic(os.path.join(RESULTS, "fault_benchmark.md"), markdown)
    print(markdown)
    return report


if __name__ == "__main__":
    main()
