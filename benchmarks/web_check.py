"""The browser page (``web/``) in headless Chromium against the runtime: cosine per window on real speech.

Builds the same students as ``mediapipe_parity.py`` (Wav2Small and an embedding student, seeded
random weights), converts each to the fixed-input MediaPipe form in float32 and int8, writes 10
LibriSpeech clips as 16-bit WAVs, and serves the page with them (``http.server`` on 127.0.0.1; the
packages' ES modules and WebAssembly come from ``web/vendor/``, copied out of ``node_modules`` by
``npm run build``, made here with ``npm ci`` when missing). Debian's ``chromium`` opens the page
headless with a job file; the page reads each WAV itself, runs the Wav2Small forms through
MediaPipe's ``AudioClassifier`` (``@mediapipe/tasks-audio``) and the embedding forms through
LiteRT.js (``@litertjs/core``, CPU), and POSTs every number back. Each window is compared with
:class:`trillsson_tf.runtime.TFLiteModel` on the same window. Goal: cosine >= 0.999 per window in
float32, >= 0.99 in int8, one result per window. Every host name but 127.0.0.1 is unresolvable in
the browser (``--host-resolver-rules``): MediaPipe's usage logging cannot leave the machine.

    make test-web
    .venv/bin/python benchmarks/web_check.py --out benchmarks/results/web_check.json
    .venv/bin/python benchmarks/web_check.py --site /tmp/site     # keep the served folder, to open by hand
"""

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(REPO, "web")
DEFAULT_OUT = os.path.join(REPO, "benchmarks", "results", "web_check.json")
PAGE_FILES = ("index.html", "app.js")
CHROMIUM_NAMES = ("chromium", "chromium-browser")
PARTS = {"scores": ("classifiers", "MediaPipe AudioClassifier"), "embedding": ("embedders", "LiteRT.js")}
"""Output -> (the page report's section, what runs it in the page)."""


class ToolMissing(RuntimeError):
    """A program the check needs is not installed; the message names the Debian package."""


def find_chromium(path=None) -> str:
    """The Chromium executable: ``path``, else ``chromium`` on the PATH (Debian's package)."""
    found = path or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not found or not os.access(found, os.X_OK):
        raise ToolMissing(
            f"Chromium not found{f' at {path}' if path else ''}: install Debian's package "
            "(apt-get install chromium; `make test-web` does it as root) or pass --chromium PATH."
        )
    return found


def wanted_versions(web: str = WEB) -> dict:
    """The page's pinned npm packages, from ``web/package.json``."""
    with open(os.path.join(web, "package.json")) as handle:
        return json.load(handle)["dependencies"]


def ensure_vendor(web: str = WEB) -> dict:
    """``web/vendor/`` at the pinned versions: ``npm ci`` and ``npm run build`` when missing or stale.

    Returns:
        ``{'versions': {package: version}, 'built': bool, 'build_s': float}``.
    """
    stamp = os.path.join(web, "vendor", "versions.json")
    wanted = wanted_versions(web)

    def current():
        if not os.path.isfile(stamp):
            return None
        with open(stamp) as handle:
            return json.load(handle)

    start, built = time.perf_counter(), False
    if current() != wanted:
        npm = shutil.which("npm")
        if npm is None:
            raise ToolMissing("npm not found: install Debian's packages nodejs and npm (apt-get install nodejs npm).")
        for command in ([npm, "ci", "--no-audit", "--no-fund"], [npm, "run", "build"]):
            result = subprocess.run(command, cwd=web, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command[1:])} in {web} failed:\n{result.stderr[-2000:]}")
        built = True
    if current() != wanted:
        raise RuntimeError(f"{stamp} holds {current()} after the build; web/package.json pins {wanted}")
    return {"versions": wanted, "built": built, "build_s": time.perf_counter() - start}


def build_site(folder: str, clips: dict, models: dict, web: str = WEB) -> str:
    """The served folder: the page, ``vendor/`` (a link), the clips as 16-bit WAVs, the models, ``job.json``.

    Args:
        clips: WAV name -> float32 ``[samples]`` at 16 kHz.
        models: ``{'classifiers': [paths], 'embedders': [paths]}``.

    Returns:
        The job file's name, relative to ``folder``.
    """
    import soundfile

    os.makedirs(os.path.join(folder, "clips"), exist_ok=True)
    os.makedirs(os.path.join(folder, "models"), exist_ok=True)
    for name in PAGE_FILES:
        shutil.copyfile(os.path.join(web, name), os.path.join(folder, name))
    os.symlink(os.path.join(web, "vendor"), os.path.join(folder, "vendor"))
    job = {"clips": [], "classifiers": [], "embedders": [], "report": "/report"}
    for name, audio in clips.items():
        soundfile.write(os.path.join(folder, "clips", name), audio, 16000, subtype="PCM_16")
        job["clips"].append(f"clips/{name}")
    for section, paths in models.items():
        for path in paths:
            shutil.copyfile(path, os.path.join(folder, "models", os.path.basename(path)))
            job[section].append(f"models/{os.path.basename(path)}")
    with open(os.path.join(folder, "job.json"), "w") as handle:
        json.dump(job, handle, indent=2)
    return "job.json"


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, plus ``POST /report``: the page's numbers, handed to the waiting check."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
        ".tflite": "application/octet-stream",
    }

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.report = json.loads(body)
        self.server.received.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        self.server.log.append(format % args)


def run_page(folder: str, job: str, chromium: str, timeout_s: float = 300) -> dict:
    """Serve ``folder``, open the page with ``job`` in headless Chromium, return what it POSTs.

    Raises:
        RuntimeError: the page sent nothing within ``timeout_s`` (Chromium's last output and the
            server's log in the message), or reported an error.
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=folder))
    server.report, server.received, server.log = None, threading.Event(), []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html?job={job}"
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium,
            "--headless=new",
            "--no-sandbox",  # root in a container
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            url,
        ]
        browser = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            received = server.received.wait(timeout_s)
        finally:
            browser.terminate()
            try:
                output = browser.communicate(timeout=20)[0]
            except subprocess.TimeoutExpired:
                browser.kill()
                output = browser.communicate()[0]
            server.shutdown()
            server.server_close()
    if not received:
        raise RuntimeError(
            f"The page sent no report within {timeout_s:.0f} s.\nChromium:\n{output[-2000:]}\n"
            "Server:\n" + "\n".join(server.log[-20:])
        )
    if server.report.get("error"):
        raise RuntimeError(f"The page reported an error: {server.report['error']}")
    return server.report


def run(
    *,
    out=DEFAULT_OUT,
    data=None,
    embedding_student="tiny_cnn",
    num_clips: int = 10,
    fixed_samples: int = 32000,
    chromium=None,
    site=None,
    timeout_s: float = 300,
) -> dict:
    """Build, convert, run the page and the runtime, compare; write ``out`` (JSON) and its ``.md``.

    Returns:
        The report: ``{'browser', 'packages', 'clips', 'rows': [{'part', 'model', 'quantize', 'windows',
        'mean_cosine', 'min_cosine', 'max_abs_diff', 'goal', 'met', 'page_ms_per_audio_s'}], 'met'}``.
    """
    import mediapipe_parity
    from runtime_benchmark import pick_clips, speech_files

    from trillsson_tf.audio import load_audio

    from trillsson_tf.errors import ParameterError

    if site and os.path.exists(site):
        raise ParameterError(f"--site {site} exists; give a new folder (the check fills it and keeps it).")
    chromium = find_chromium(chromium)
    vendor = ensure_vendor()
    clip_files, spare = pick_clips(speech_files(data), num_clips)
    clips = {os.path.splitext(os.path.basename(p))[0] + ".wav": load_audio(p) for p in clip_files}
    students = mediapipe_parity.build_students(embedding_student)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        folder = site or os.path.join(scratch, "site")
        os.makedirs(os.path.join(scratch, "forms"))
        forms = mediapipe_parity.convert_forms(students, os.path.join(scratch, "forms"), spare[:32], fixed_samples)
        models = {PARTS[output][0]: [] for output in PARTS}
        for (output, _), path in forms.items():
            models[PARTS[output][0]].append(path)
        job = build_site(folder, clips, models)
        # The reference reads the WAVs the page reads (16-bit, so the same samples as the FLACs).
        audio = [load_audio(os.path.join(folder, "clips", name)) for name in clips]
        expected = {key: mediapipe_parity.reference_windows(path, audio) for key, path in forms.items()}
        sizes = {key: os.path.getsize(path) for key, path in forms.items()}
        prepared_s = time.perf_counter() - start
        start = time.perf_counter()
        page = run_page(folder, job, chromium, timeout_s)
        page_s = time.perf_counter() - start
    total_s = sum(len(a) for a in audio) / 16000
    rows = []
    for output, quantize in [(output, quantize) for output in PARTS for quantize in mediapipe_parity.GOALS]:
        path = forms[output, quantize]
        section, runner = PARTS[output]
        results = [page[section][f"models/{os.path.basename(path)}"][f"clips/{name}"] for name in clips]
        got = [np.asarray(r["scores" if output == "scores" else "vectors"], np.float32) for r in results]
        row = {
            "part": runner,
            "model": students[output].name,
            "output": output,
            "quantize": quantize,
            "file_bytes": sizes[output, quantize],
            **mediapipe_parity.compare_windows(expected[output, quantize], got, quantize),
            "page_ms_per_audio_s": sum(r["ms"] for r in results) / total_s,
        }
        if output == "scores":
            step_ms = fixed_samples * 1000 // 16000
            row["timestamps_ok"] = all(
                r["timestamps_ms"] == [i * step_ms for i in range(len(r["timestamps_ms"]))] for r in results
            )
            row["labels"] = results[0]["labels"]
            row["met"] = row["met"] and row["timestamps_ok"]
        rows.append(row)
    durations = [len(a) / 16000 for a in audio]
    report = {
        "what": "web/ in headless Chromium (MediaPipe AudioClassifier, LiteRT.js) vs trillsson_tf.runtime.TFLiteModel, per window",
        "browser": page["user_agent"],
        "packages": page["versions"],
        "vendor": vendor,
        "clips": {
            "count": len(audio),
            "files": [os.path.basename(p) for p in clip_files],
            "total_s": total_s,
            "min_s": min(durations),
            "max_s": max(durations),
        },
        "fixed_samples": fixed_samples,
        "weights": "seeded random (keras.utils.set_random_seed(0))",
        "prepare_s": prepared_s,
        "page_s": page_s,
        "rows": rows,
        "met": all(row["met"] for row in rows),
    }
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as handle:
            json.dump(report, handle, indent=2)
        with open(os.path.splitext(out)[0] + ".md", "w") as handle:
            handle.write(to_markdown(report))
    return report


def to_markdown(report: dict) -> str:
    clips = report["clips"]
    packages = ", ".join(f"`{name}` {version}" for name, version in report["packages"].items())
    browser = report["browser"].split("HeadlessChrome/")[-1].split()[0]
    lines = [
        "# The browser page: web/ in headless Chromium vs the runtime, per window",
        "",
        f"Headless Chromium {browser} (Debian), {packages} (served from `web/vendor/`, no CDN); "
        f"{clips['count']} real LibriSpeech clips as 16-bit WAVs, {clips['total_s']:.1f} s "
        f"({clips['min_s']:.1f}-{clips['max_s']:.1f} s); fixed input [1, {report['fixed_samples']}]; weights "
        f"{report['weights']}. The page runs {report['page_s']:.0f} s in all (WebAssembly compiles included).",
        "",
        "| in the page | model | quantize | windows (counts match) | mean cosine | min cosine | max abs diff "
        "| goal (min) | met | page ms per s of audio |",
        "|---|---|---|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['part']} | {row['model']} ({row['output']}) | {row['quantize']} | {row['windows']} "
            f"({'yes' if row['windows_match'] else 'NO'}) | {row.get('mean_cosine', float('nan')):.6f} | "
            f"{row.get('min_cosine', float('nan')):.6f} | {row.get('max_abs_diff', float('nan')):.2e} | "
            f">= {row['goal']} | {'yes' if row['met'] else 'NO'} | {row['page_ms_per_audio_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON report (the markdown goes beside it)")
    parser.add_argument(
        "--data", default=None, help="folder of real speech (.flac); default ../shared/data LibriSpeech"
    )
    parser.add_argument("--student", default="tiny_cnn", help="embedding student (registry name)")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--fixed-samples", type=int, default=32000)
    parser.add_argument("--chromium", default=None, help="Chromium executable (default: chromium on the PATH)")
    parser.add_argument("--site", default=None, help="assemble the served folder here and keep it (must not exist)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the page's report")
    args = parser.parse_args(argv)
    from trillsson_tf.errors import ParameterError

    try:
        report = run(
            out=args.out,
            data=args.data,
            embedding_student=args.student,
            num_clips=args.clips,
            fixed_samples=args.fixed_samples,
            chromium=args.chromium,
            site=args.site,
            timeout_s=args.timeout,
        )
    except (ToolMissing, ParameterError) as error:
        print(f"web_check: {error}", file=sys.stderr)
        return 2
    print(to_markdown(report))
    print(f"Wrote {args.out}")
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
