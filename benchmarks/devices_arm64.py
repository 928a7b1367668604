"""The TensorFlow-free runtime on an emulated ARM64 board (Debian arm64 under qemu-user).

Builds (once, cached in ``~/.cache/trillsson_tf/arm64-root``) a Debian bookworm arm64 root
filesystem with ``debootstrap``, installs the base package into a virtualenv there from aarch64
wheels (``pip download --only-binary=:all: --platform ...``: numpy, soundfile, soxr and the
``ai-edge-litert`` pinned in ``setup.cfg``; no TensorFlow) and a wheel of this checkout, then runs
under qemu-user:

* ``trillsson-tf embed`` on the sample WAV of ``android_demo_assets`` with each model;
* the golden-output check of ``android_demo_assets`` (``android.golden_outputs`` +
  ``android.check_golden``, what ``tests/test_apps_android.py`` runs) on its int8 files and on
  float32 files converted here on the host from the same students (random weights; parity does
  not depend on training).

Every output is compared with the same run on this x86-64 host: cosine >= 0.9999 for float32
networks; for int8 networks every value within one output quantization step (the cosine is
recorded: one step on a 3-score output is already 1e-4 of cosine). Records the set-up time (rootfs,
wheels, install) and the emulated wall time of each run. Needs root and the Debian packages
``qemu-user-static binfmt-support debootstrap``. Writes ``benchmarks/results/devices_arm64.json``.

    .venv/bin/python benchmarks/devices_arm64.py          # make test-arm64

Traps (see ../shared/DEVICES.md): ``/sys`` is not mounted in the chroot (LiteRT 2.3.0 segfaults
in its CPU detection under qemu 7.2 when it sees the host's); ``binfmt_misc`` is mounted here
when it is not.
"""

import argparse
import configparser
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(REPO, "android_demo_assets")
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "trillsson_tf", "arm64-root")
SUITE = "bookworm"  # Python 3.11: the wheels below are cp311
ROOT_PACKAGES = "python3,python3-venv,python3-pip,libsndfile1"
PYTHON_TAGS = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
# ai-edge-litert 2.3.0 ships only a manylinux_2_27 aarch64 wheel: without that tag pip silently picks 1.4.0.
PLATFORM_TAGS = ["manylinux_2_17_aarch64", "manylinux2014_aarch64", "manylinux_2_27_aarch64", "manylinux_2_28_aarch64"]
DEBIAN_TOOLS = {
    "debootstrap": "debootstrap",
    "qemu-aarch64-static": "qemu-user-static",
    "update-binfmts": "binfmt-support",
}
BINFMT = "/proc/sys/fs/binfmt_misc"
MIN_COSINE = 0.9999
# float32 files (frontend inside, random weights) converted on the host from the students of the int8 assets.
FLOAT_STUDENTS = {"embedding_float32.tflite": "tiny_cnn", "wav2small_float32.tflite": "wav2small"}

# Runs inside the chroot (and on the host, for the reference): every model's golden outputs.
PROBE = r"""
import json, sys, time
from trillsson_tf.apps import android
from trillsson_tf.audio import load_audio
models, sample, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
audio = load_audio(sample)
result = {}
for path in models:
    start = time.perf_counter()
    result[path.rsplit("/", 1)[-1]] = {"outputs": android.golden_outputs(path, audio), "seconds": time.perf_counter() - start}
json.dump(result, open(out, "w"))
"""


def _run(command, **kwargs):
    return subprocess.run(command, check=True, **kwargs)


def check_tools() -> None:
    """Exit with one line naming the Debian package of the first missing tool."""
    for tool, package in DEBIAN_TOOLS.items():
        if shutil.which(tool) is None:
            sys.exit(f"devices_arm64: {tool} not found; install it with `apt-get install {package}`")
    if os.geteuid() != 0:
        sys.exit("devices_arm64: debootstrap and chroot need root")


def enable_binfmt() -> None:
    """Mount ``binfmt_misc`` (not mounted by default here) and enable the aarch64 handler."""
    if not os.path.exists(os.path.join(BINFMT, "register")):
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT])
    if not os.path.exists(os.path.join(BINFMT, "qemu-aarch64")):
        _run(["update-binfmts", "--enable", "qemu-aarch64"])


def build_root(root: str) -> float:
    """Debootstrap the arm64 root filesystem into ``root`` unless a finished one is there; seconds spent."""
    done = os.path.join(root, ".trillsson_complete")
    if os.path.exists(done):
        return 0.0
    start = time.perf_counter()
    if os.path.exists(root):
        shutil.rmtree(root)  # a half-built root from an interrupted run
    os.makedirs(os.path.dirname(root), exist_ok=True)
    _run(
        [
            "debootstrap",
            "--arch=arm64",
            "--variant=minbase",
            f"--include={ROOT_PACKAGES}",
            SUITE,
            root,
            "http://deb.debian.org/debian",
        ]
    )
    open(done, "w").close()
    return time.perf_counter() - start


def base_requirements() -> list:
    """``install_requires`` of ``setup.cfg``: the base package, no TensorFlow."""
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    return [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]


def download_wheels(wheel_dir: str) -> float:
    """aarch64 wheels of the base requirements and a wheel of this checkout into ``wheel_dir``; seconds."""
    start = time.perf_counter()
    os.makedirs(wheel_dir, exist_ok=True)
    platforms = [arg for tag in PLATFORM_TAGS for arg in ("--platform", tag)]
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            *PYTHON_TAGS,
            *platforms,
            "--dest",
            wheel_dir,
            *base_requirements(),
        ]
    )
    for old in glob.glob(os.path.join(wheel_dir, "trillsson_tf-*.whl")):
        os.remove(old)  # always this checkout's code
    with tempfile.TemporaryDirectory() as build:
        # A copy, so the build leaves no build/ or egg-info in the checkout.
        source = os.path.join(build, "src")
        shutil.copytree(
            REPO,
            source,
            ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info", "notebooks", "benchmarks"),
        )
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                wheel_dir,
                source,
            ]
        )
    return time.perf_counter() - start


class Chroot:
    """``/proc`` and ``/dev`` mounted in the arm64 root while in use (never ``/sys``: see the module doc)."""

    def __init__(self, root: str):
        self.root = root
        self.mounts = []

    def __enter__(self):
        for target, command in (("proc", ["mount", "-t", "proc", "proc"]), ("dev", ["mount", "--bind", "/dev"])):
            path = os.path.join(self.root, target)
            if not os.path.ismount(path):
                _run(command + [path])
                self.mounts.append(path)
        return self

    def __exit__(self, *exc):
        for path in reversed(self.mounts):
            subprocess.run(["umount", "-l", path], check=False)

    def run(self, *command, capture=False) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        # The environment is the board's; chroot itself is found on the host's PATH (it is in /usr/sbin).
        chroot = shutil.which("chroot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        return subprocess.run([chroot, self.root, *command], check=True, env=env, text=True, capture_output=capture)


def install(chroot: Chroot, wheel_dir: str) -> float:
    """A fresh virtualenv ``/opt/trillsson`` in the root with the base package from the wheels; seconds."""
    start = time.perf_counter()
    inside = os.path.join(chroot.root, "opt", "wheels")
    shutil.rmtree(inside, ignore_errors=True)
    shutil.copytree(wheel_dir, inside)
    shutil.rmtree(os.path.join(chroot.root, "opt", "trillsson"), ignore_errors=True)
    chroot.run("python3", "-m", "venv", "/opt/trillsson")
    chroot.run(
        "/opt/trillsson/bin/pip", "install", "--quiet", "--no-index", "--find-links", "/opt/wheels", "trillsson_tf"
    )
    return time.perf_counter() - start


def float_models(work: str) -> list:
    """float32 ``.tflite`` files (frontend inside) of the students in :data:`FLOAT_STUDENTS`, converted here."""
    paths = []
    for file_name, student in FLOAT_STUDENTS.items():
        path = os.path.join(work, file_name)
        export = os.path.join(work, f"{student}_export")
        _run([sys.executable, "-m", "trillsson_tf.apps.cli", "-q", "export", student, export])
        _run(
            [
                sys.executable,
                "-m",
                "trillsson_tf.apps.cli",
                "-q",
                "convert",
                export,
                "--out",
                path,
                "--quantize",
                "float32",
            ],
            stdout=subprocess.DEVNULL,
        )
        paths.append(path)
    return paths


def output_step(model_path: str):
    """The quantization step of the int8 tensor the model's last DEQUANTIZE reads, or ``None`` (float network)."""
    from trillsson_tf import litert

    interpreter = litert.make_interpreter(model_path=model_path, num_threads=1, delegates=False)
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    steps = [
        details[int(op["inputs"][0])]["quantization"][0]
        for op in litert.ops(interpreter)
        if op["op_name"] == "DEQUANTIZE" and details[int(op["inputs"][0])]["dtype"] == np.int8
    ]
    return float(steps[-1]) if steps else None


def compare(reference: np.ndarray, emulated: np.ndarray, step) -> dict:
    """Cosine and largest difference of two outputs; ``passed`` per the module's rule."""
    a, b = reference.astype(np.float64).ravel(), emulated.astype(np.float64).ravel()
    cosine = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))
    max_diff = float(np.max(np.abs(a - b)))
    # An int8 network is held to one output step: on a 3-score output one step already costs more
    # than 1e-4 of cosine (wav2small: 0.99989), so the cosine bound is for float networks.
    passed = cosine >= MIN_COSINE if step is None else max_diff <= step * (1 + 1e-4)
    return {
        "cosine": cosine,
        "max_abs_diff": max_diff,
        "output_step": step,
        "max_diff_in_steps": None if step is None else max_diff / step,
        "passed": passed,
    }


def run_arm64(out_json=None) -> dict:
    """Set up (or reuse) the arm64 root, run the checks, write ``devices_arm64.json``; the report."""
    check_tools()
    enable_binfmt()
    root = os.path.join(CACHE, SUITE)
    setup = {"rootfs_s": build_root(root)}
    setup["wheels_s"] = download_wheels(os.path.join(CACHE, "wheels"))
    report = {"board": f"Debian {SUITE} arm64 under qemu-user ({_qemu_version()})", "setup_s": setup, "models": {}}
    with tempfile.TemporaryDirectory(dir=os.path.join(root, "tmp")) as work, Chroot(root) as chroot:
        setup["install_s"] = install(chroot, os.path.join(CACHE, "wheels"))
        inside = lambda path: "/" + os.path.relpath(path, root)  # noqa: E731 - host path -> chroot path
        for name in os.listdir(ASSETS):
            if name.endswith(".tflite") or name.endswith(".json") and not name.endswith(".metadata.json"):
                shutil.copy(os.path.join(ASSETS, name), work)
        models = sorted(glob.glob(os.path.join(work, "*.tflite"))) + float_models(work)
        sample = os.path.join(work, "sample_16k.wav")
        shutil.copy(os.path.join(ASSETS, "sample_16k.wav"), sample)
        probe = os.path.join(work, "probe.py")
        with open(probe, "w") as handle:
            handle.write(PROBE)

        host_json, arm_json = os.path.join(work, "host.json"), os.path.join(work, "arm64.json")
        _run([sys.executable, probe, ",".join(models), sample, host_json])
        start = time.perf_counter()
        chroot.run(
            "/opt/trillsson/bin/python", inside(probe), ",".join(map(inside, models)), inside(sample), inside(arm_json)
        )
        golden_wall = time.perf_counter() - start
        with open(host_json) as handle:
            host = json.load(handle)
        with open(arm_json) as handle:
            arm = json.load(handle)
        with open(os.path.join(ASSETS, "golden_outputs.json")) as handle:
            golden = json.load(handle)["models"]

        from trillsson_tf.apps import android

        for model in models:
            name = os.path.basename(model)
            step = output_step(model)
            row = {
                "network": "int8" if step else "float32",
                "golden_emulated_s": arm[name]["seconds"],
                "golden_host_s": host[name]["seconds"],
                "outputs": {},
            }
            for key, values in host[name]["outputs"].items():
                row["outputs"][key] = compare(np.asarray(values), np.asarray(arm[name]["outputs"][key]), step)
            if name in golden:
                row["golden_check"] = android.check_golden(golden[name], arm[name]["outputs"])
            # The CLI as a user runs it: trillsson-tf embed, emulated, against the host's.
            host_npy, arm_npy = os.path.join(work, f"{name}.host.npy"), os.path.join(work, f"{name}.arm64.npy")
            _run(
                [
                    sys.executable,
                    "-m",
                    "trillsson_tf.apps.cli",
                    "-q",
                    "embed",
                    model,
                    sample,
                    "--out",
                    host_npy,
                    "--no-progress",
                    "--num-threads",
                    "1",
                ],
                stdout=subprocess.DEVNULL,
            )
            start = time.perf_counter()
            chroot.run(
                "/opt/trillsson/bin/trillsson-tf",
                "-q",
                "embed",
                inside(model),
                inside(sample),
                "--out",
                inside(arm_npy),
                "--no-progress",
                "--num-threads",
                "1",
                capture=True,
            )
            row["embed_emulated_wall_s"] = time.perf_counter() - start
            row["embed"] = compare(np.load(host_npy), np.load(arm_npy), step)
            report["models"][name] = row
        report["golden_emulated_wall_s"] = golden_wall
        report["arm64_python"] = chroot.run(
            "/opt/trillsson/bin/python",
            "-c",
            "import platform; from importlib.metadata import version; "
            "print(f'{platform.machine()}, Python {platform.python_version()}, numpy "
            '{version("numpy")}, ai-edge-litert {version("ai-edge-litert")}\')',
            capture=True,
        ).stdout.strip()
    report["setup_s"]["total_s"] = sum(setup.values())
    report["passed"] = all(
        row["embed"]["passed"]
        and all(o["passed"] for o in row["outputs"].values())
        and all(g["passed"] for g in row.get("golden_check", {}).values())
        for row in report["models"].values()
    )
    out_json = out_json or os.path.join(RESULTS_DIR, "devices_arm64.json")
    with open(out_json, "w") as handle:
        json.dump(report, handle, indent=2)
    return report


def _qemu_version() -> str:
    line = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return line.replace("qemu-aarch64 version ", "qemu ").split(" (")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="output file (default: benchmarks/results/devices_arm64.json)")
    args = parser.parse_args()
    report = run_arm64(args.json)
    print(
        json.dumps(
            {
                name: {"embed": row["embed"], "emulated_s": row["embed_emulated_wall_s"]}
                for name, row in report["models"].items()
            },
            indent=1,
        )
    )
    print(f"set-up {report['setup_s']}; passed: {report['passed']}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
