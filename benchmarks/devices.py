"""Every device check in one run (``make test-devices``): MediaPipe, ARM64 under qemu-user, Cortex-M4 in QEMU.

Each check is a script of its own in ``benchmarks/`` that exits 0 when it passes and writes
``benchmarks/results/<script>.json``; they run one after the other in fresh processes (each
imports what it needs, TensorFlow included). A check whose script is not in this checkout is
reported as skipped, not failed. Writes ``benchmarks/results/devices.json`` (every check's
status, time and report) and ``devices.md`` (the figures).

    .venv/bin/python benchmarks/devices.py                   # all of them
    .venv/bin/python benchmarks/devices.py --only arm64 cortex_m4   # the others keep their last results

Needs root, the Debian packages named by each script when missing, and the TFLite Micro
sources in ``../shared/third_party`` (or ``--tflm``).
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")
RESULTS_DIR = os.path.join(BENCHMARKS, "results")
CHECKS = {  # name -> (script in benchmarks/, its results file in results/ without .json)
    "mediapipe": ("mediapipe_parity", "mediapipe"),
    "arm64": ("devices_arm64", "devices_arm64"),
    "cortex_m4": ("devices_micro", "devices_micro"),
}


def run_check(name: str, script: str, results_name: str, extra_args=()) -> dict:
    """Run one check script; ``{'status': 'passed' | 'failed' | 'skipped', 'seconds', 'report', ...}``."""
    path = os.path.join(BENCHMARKS, script + ".py")
    if not os.path.isfile(path):
        return {"status": "skipped", "why": f"benchmarks/{script}.py is not in this checkout"}
    results = os.path.join(RESULTS_DIR, results_name + ".json")
    before = os.path.getmtime(results) if os.path.exists(results) else None
    start = time.perf_counter()
    result = subprocess.run([sys.executable, path, *extra_args], cwd=REPO, capture_output=True, text=True)
    row = {
        "status": "passed" if result.returncode == 0 else "failed",
        "seconds": time.perf_counter() - start,
        "returncode": result.returncode,
        "stdout_tail": result.stdout[-3000:],
    }
    if result.returncode != 0:
        row["stderr_tail"] = result.stderr[-3000:]
    if os.path.exists(results) and os.path.getmtime(results) != before:  # written by this run, not an old one
        with open(results) as handle:
            row["report"] = json.load(handle)
    print(f"{name}: {row['status']} in {row['seconds']:.0f} s", flush=True)
    return row


def _markdown(checks: dict) -> str:
    lines = [
        "# Device checks",
        "",
        "`make test-devices` (`benchmarks/devices.py`).",
        "",
        "| check | status | seconds |",
        "|---|---|---:|",
    ]
    lines += [f"| {name} | {row['status']} | {row.get('seconds', 0):.0f} |" for name, row in checks.items()]
    if checks.get("mediapipe", {}).get("report"):  # its script writes the table beside its JSON
        with open(os.path.join(RESULTS_DIR, CHECKS["mediapipe"][1] + ".md")) as handle:
            lines += ["", "#" + handle.read().strip()]
    arm = checks.get("arm64", {}).get("report")
    if arm:
        setup = arm["setup_s"]
        lines += [
            "",
            f"## ARM64: {arm['board']}",
            "",
            f"Set-up {setup['total_s']:.0f} s (root filesystem {setup['rootfs_s']:.0f} s, 0 when cached; wheels "
            f"{setup['wheels_s']:.0f} s; install {setup['install_s']:.0f} s). On the board: {arm['arm64_python']}.",
            "",
            "| model | network | `embed` cosine vs x86 | max diff (steps) | golden cosine | `embed` emulated s "
            "| golden run emulated s |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for name, row in arm["models"].items():
            embed = row["embed"]
            steps = "-" if embed["max_diff_in_steps"] is None else f"{embed['max_diff_in_steps']:.2f}"
            golden = row.get("golden_check")
            golden_cos = min(g["cosine"] for g in golden.values()) if golden else None
            lines.append(
                f"| {name} | {row['network']} | {embed['cosine']:.7f} | {embed['max_abs_diff']:.3g} ({steps}) | "
                f"{'-' if golden_cos is None else f'{golden_cos:.5f}'} | {row['embed_emulated_wall_s']:.1f} | "
                f"{row['golden_emulated_s']:.2f} |"
            )
    micro = checks.get("cortex_m4", {}).get("report")
    if micro:
        board = micro["board"]
        lines += [
            "",
            f"## Cortex-M4: {board['name']} in qemu-system-arm",
            "",
            f"libtensorflow-microlite.a: built in {micro['library']['built_s']:.0f} s (0 when cached). Flash = "
            "text + rodata (+ unwind tables, init arrays, .data initial values); RAM = data + bss (the static "
            "arena included); RAM used = RAM less the arena's unused part.",
            "",
            "| model | .tflite B | flash B | text B | rodata B | RAM B (data + bss) | arena used on the board B "
            "(host, 64-bit) | RAM used B | bit-exact | run s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for name, row in micro["models"].items():
            lines.append(
                f"| {name} | {row['model_bytes']:,} | {row['flash_bytes']:,} | {row['text']:,} | {row['rodata']:,} | "
                f"{row['ram_static_bytes']:,} ({row['data']:,} + {row['bss']:,}) | {row['arena_used_board_bytes']:,} "
                f"({row['arena_used_host_bytes']:,}) | {row['ram_used_bytes']:,} | {row['bit_exact']} | "
                f"{row['run_s']:.1f} |"
            )
        lines += ["", f"Too-small arena: {micro['too_small_arena'].get('message', micro['too_small_arena'])}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), default=None, help="run only these checks")
    parser.add_argument("--tflm", default=None, help="tflite-micro tarball or tree for the Cortex-M4 check")
    args = parser.parse_args()
    checks = {}
    summary = os.path.join(RESULTS_DIR, "devices.json")
    if args.only and os.path.exists(summary):  # a partial run keeps the other checks' last results
        with open(summary) as handle:
            checks = json.load(handle)["checks"]
    for name, (script, results_name) in CHECKS.items():
        if args.only and name not in args.only:
            continue
        extra = ["--tflm", args.tflm] if name == "cortex_m4" and args.tflm else []
        checks[name] = run_check(name, script, results_name, extra)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(summary, "w") as handle:
        json.dump({"checks": checks}, handle, indent=2)
    text = _markdown(checks)
    with open(os.path.join(RESULTS_DIR, "devices.md"), "w") as handle:
        handle.write(text)
    print(text)
    return 0 if all(row["status"] != "failed" for row in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
