"""TFLite Micro firmware for the ``mps2-an386`` Cortex-M4 board, built and run in QEMU.

:func:`write_micro_project` writes a project folder (the files of :func:`trillsson_tf.converters.micro.to_micro`,
the input as an array, a runner, start-up code, the board's linker script, a Makefile);
:func:`micro_build` compiles it with Debian's ``arm-none-eabi`` toolchain against
``libtensorflow-microlite.a`` (:func:`prepare_tflm`: sources from ``--tflm`` or ``$TRILLSSON_TFLM``,
built once and cached), reads flash and RAM from the ELF, runs it in ``qemu-system-arm`` and
compares its outputs with the host ``tflite-micro`` interpreter's. Board memory: docs/DESIGN.md, "Device".
"""

import glob
import json
import logging
import os
import re
import shutil
import string
import subprocess
import sys
import tarfile
import time
from importlib import resources

import numpy as np

from trillsson_tf.converters.micro import micro_run, to_micro
from trillsson_tf.errors import ConversionError, ParameterError
from trillsson_tf.folders import write_json

__all__ = ["BOARD", "DEBIAN_PACKAGES", "check_toolchain", "micro_build", "prepare_tflm", "write_micro_project"]

_log = logging.getLogger(__name__)

BOARD = {
    "name": "mps2-an386",
    "cpu": "cortex-m4",
    "flash_origin": 0x00000000,
    "flash_bytes": 4 << 20,
    "ram_origin": 0x20000000,
    "ram_bytes": 4 << 20,
}
"""The target board: QEMU's memory map of the Arm MPS2 AN386 FPGA image."""

DEBIAN_PACKAGES = {
    "arm-none-eabi-g++": "gcc-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "rdimon.specs": "libnewlib-arm-none-eabi",
    "libstdc++.a": "libstdc++-arm-none-eabi-newlib",
    "qemu-system-arm": "qemu-system-arm",
    "make": "make",
}
"""What the build needs -> the Debian package that provides it."""

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "trillsson_tf", "tflm")
SOURCES_ENV = "TRILLSSON_TFLM"  # a tflite-micro tarball or source tree used when none is given
_STACK_BYTES = 64 * 1024  # kept free for the stack below the top of RAM (the linker script checks it)
_LIB = os.path.join("gen", "cortex_m_qemu_{cpu}_default_gcc", "lib", "libtensorflow-microlite.a")
_TEMPLATES = {  # key -> (template, file written with ``{name}`` replaced)
    "runner": ("micro_runner.cc", "{name}_runner.cc"),
    "startup": ("micro_startup.c", "{name}_startup.c"),
    "linker_script": ("micro_board.ld", "{name}_board.ld"),
    "makefile": ("micro_Makefile", "Makefile"),
}
_OUTPUT_LINE = re.compile(r"^trillsson: output (\d+) (\w+) (\d+):(.*)$", re.M)
_ARENA_LINE = re.compile(r"^trillsson: arena_used_bytes (\d+)$", re.M)
_TOO_SMALL_LINE = re.compile(r"^trillsson: arena too small: (\d+) bytes given, (\d+) bytes needed$", re.M)
_BYTES_PER_LINE = 12
PROJECT_FILE = "micro_project.json"


def _template(name: str) -> string.Template:
    return string.Template(resources.files("trillsson_tf.converters").joinpath("templates", name).read_text())


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _board_fit(flash: int, ram: int, what: str) -> None:
    over = []
    if flash > BOARD["flash_bytes"]:
        over.append(f"flash {flash:,} bytes > the board's {BOARD['flash_bytes']:,}")
    if ram > BOARD["ram_bytes"]:
        over.append(f"RAM {ram:,} bytes > the board's {BOARD['ram_bytes']:,}")
    if over:
        raise ParameterError(f"{what} does not fit the {BOARD['name']} board: {'; '.join(over)}.")


def write_micro_project(
    model_path, out_dir, *, name: str = "g_model", input_values=None, arena_bytes=None, overwrite: bool = False
) -> dict:
    """Write a firmware project for the ``mps2-an386`` board that runs a TFLite Micro model once.

    Args:
        model_path: int8 (or float32) ``.tflite`` with ops TFLite Micro has and a static input,
            normally ``convert(..., quantize='int8', frontend=False)``.
        out_dir: Project folder (created); holds the files of :func:`trillsson_tf.converters.micro.to_micro`,
            ``<name>_input.cc``, ``<name>_runner.cc``, ``<name>_startup.c``, ``<name>_board.ld``,
            ``Makefile`` and ``micro_project.json``.
        name: C identifier of the model array and file stem.
        input_values: The input tensor the runner feeds: an array of the input's shape (a leading 1
            may be left out) in its dtype, or float values that are quantized with the input's
            scale; ``None`` gives zeros.
        arena_bytes: Static tensor arena of the runner; ``None`` uses the measured one (host
            interpreter's use plus slack).
        overwrite: Replace existing files.

    Returns:
        The project record (also in ``micro_project.json``): ``{'name', 'board', 'files', 'micro',
        'arena_bytes', 'input_bytes'}`` with ``micro`` the report of ``to_micro``.

    Raises:
        ParameterError: bad name or input, existing files, or a model over the board's flash or RAM.
        ConversionError: ops TFLite Micro lacks (listed, before anything is built).
    """
    out_dir = os.fspath(out_dir)
    files = {key: os.path.join(out_dir, pattern.format(name=name)) for key, (_, pattern) in _TEMPLATES.items()}
    files["input"] = os.path.join(out_dir, f"{name}_input.cc")
    files["input_npy"] = os.path.join(out_dir, f"{name}_input.npy")
    files["model"] = os.path.join(out_dir, f"{name}.tflite")
    files["project"] = os.path.join(out_dir, PROJECT_FILE)
    model_path = os.fspath(model_path)
    existing = [
        path
        for path in files.values()
        if os.path.exists(path) and not (os.path.isfile(model_path) and os.path.samefile(path, model_path))
    ]
    if existing and not overwrite:
        raise ParameterError(f"Output files exist: {existing}; pass overwrite=True (CLI --force).")
    if os.path.isfile(model_path):  # the model array alone must fit the flash: refused before any work
        _board_fit(os.path.getsize(model_path), 0, f"The model ({os.path.getsize(model_path):,} bytes)")
    micro = to_micro(model_path, out_dir, name=name, overwrite=overwrite)
    arena = int(arena_bytes) if arena_bytes is not None else micro["arena_bytes"]
    if arena <= 0:
        raise ParameterError(f"arena_bytes must be positive, got {arena_bytes!r}.")
    # The arena and the stack are in RAM; the linked sizes are checked again after the build.
    _board_fit(
        micro["model_bytes"], arena + _STACK_BYTES, f"The model (arena {arena:,} bytes + {_STACK_BYTES:,} stack)"
    )
    inputs = _input_tensor(input_values, micro["input"])
    data = inputs.tobytes()
    np.save(files["input_npy"], inputs)  # the same tensor for the host interpreter
    if not os.path.exists(files["model"]) or not os.path.samefile(model_path, files["model"]):
        shutil.copyfile(model_path, files["model"])

    with open(files["input"], "w") as handle:
        lines = "\n".join(
            "    " + ", ".join(f"0x{b:02x}" for b in data[i : i + _BYTES_PER_LINE]) + ","
            for i in range(0, len(data), _BYTES_PER_LINE)
        )
        handle.write(
            f"// Generated by trillsson_tf converters.micro_project: the input tensor of {name} "
            f"({micro['input']['dtype']} {micro['input']['shape']}), raw bytes.\n"
            f'extern "C" alignas(16) const unsigned char {name}_input[] = {{\n{lines}\n}};\n'
            f'extern "C" const unsigned int {name}_input_len = {len(data)};\n'
        )
    values = {
        "name": name,
        "camel": _camel(name),
        "board": BOARD["name"],
        "cpu": BOARD["cpu"],
        "arena_bytes": arena,
        "flash_origin": f"0x{BOARD['flash_origin']:08x}",
        "flash_bytes": BOARD["flash_bytes"],
        "ram_origin": f"0x{BOARD['ram_origin']:08x}",
        "ram_bytes": BOARD["ram_bytes"],
        "flash_kib": BOARD["flash_bytes"] // 1024,
        "ram_kib": BOARD["ram_bytes"] // 1024,
        "stack_bytes": _STACK_BYTES,
    }
    for key, (template, _) in _TEMPLATES.items():
        with open(files[key], "w") as handle:
            handle.write(_template(template).substitute(values))
    record = {
        "name": name,
        "board": BOARD,
        "files": {k: os.path.basename(v) for k, v in files.items()},
        "micro": {k: v for k, v in micro.items() if k != "files"},
        "arena_bytes": arena,
        "input_bytes": len(data),
    }
    with open(files["project"], "w") as handle:
        json.dump(record, handle, indent=2)
    _log.info("Wrote the %s project of %s to %s", BOARD["name"], model_path, out_dir)
    return record


def _input_tensor(values, details: dict) -> np.ndarray:
    """The input tensor (little-endian, the model's shape and dtype) from user values (see :func:`write_micro_project`)."""
    dtype, shape = np.dtype(details["dtype"]).newbyteorder("<"), details["shape"]
    if values is None:
        return np.zeros(shape, dtype)
    values = np.asarray(values)
    if values.size != int(np.prod(shape)):
        raise ParameterError(
            f"The input has {values.size} values; the model's input {shape} needs {int(np.prod(shape))}."
        )
    if values.dtype.kind == "f" and dtype.kind in "iu":
        from trillsson_tf import litert

        values = litert.quantize(
            values.astype(np.float32), {"dtype": dtype, "quantization": (details["scale"], details["zero_point"])}
        )
    elif values.dtype.name != dtype.name:
        raise ParameterError(f"The input is {values.dtype.name}; the model's input is {dtype.name}.")
    return values.reshape(shape).astype(dtype)


def check_toolchain() -> dict:
    """The tools the build and the run need, as absolute paths.

    Raises:
        ParameterError: one line naming the first missing tool and its Debian package.
    """
    found = {}
    for tool in ("arm-none-eabi-g++", "arm-none-eabi-size", "qemu-system-arm", "make"):
        found[tool] = shutil.which(tool)
        if found[tool] is None:
            raise ParameterError(f"{tool} not found: install it with `apt-get install {DEBIAN_PACKAGES[tool]}`.")
    gcc = found["arm-none-eabi-g++"]
    for library, flags in (
        ("rdimon.specs", []),
        ("libstdc++.a", ["-mcpu=" + BOARD["cpu"], "-mthumb", "-mfloat-abi=soft"]),
    ):
        path = subprocess.run(
            [gcc, *flags, f"-print-file-name={library}"], capture_output=True, text=True
        ).stdout.strip()
        if not os.path.isabs(path):  # gcc echoes the bare name when it has no such file
            raise ParameterError(
                f"{library} for arm-none-eabi not found: install it with `apt-get install {DEBIAN_PACKAGES[library]}`."
            )
        found[library] = path
    return found


def _find_sources(sources):
    if sources is None:
        sources = os.environ.get(SOURCES_ENV) or None
    if sources is None:
        raise ParameterError(
            f"No TFLite Micro sources: give a tflite-micro tarball or source tree (CLI --tflm) "
            f"or set ${SOURCES_ENV} to one."
        )
    sources = os.path.abspath(os.fspath(sources))
    if not os.path.exists(sources):
        raise ParameterError(f"TFLite Micro sources not found: {sources!r}.")
    return sources


def prepare_tflm(sources=None, *, cache_dir=None, progress: bool = False) -> dict:
    """A TFLite Micro tree with ``libtensorflow-microlite.a`` for the board, extracted and built once.

    A tarball (``tflite-micro-<rev>.tar.xz`` with ``tools/make/downloads`` filled) is extracted into
    ``cache_dir/<stem>/``; a source tree is used in place. Its ``downloads/gcc_embedded/bin`` is
    pointed at the system's ``arm-none-eabi-*`` tools, so that TFLite Micro's makefile downloads no
    toolchain, and the library is built there (about 15 min on 2 cores) unless it is already.

    Args:
        sources: tarball or tree; ``None``: ``$TRILLSSON_TFLM`` (a ParameterError when unset).
        cache_dir: Where tarballs are extracted (default ``~/.cache/trillsson_tf/tflm``).
        progress: Show the library build's output.

    Returns:
        ``{'root', 'library', 'built_s'}`` (``built_s`` 0 when cached).
    """
    check_toolchain()
    sources = _find_sources(sources)
    if os.path.isdir(sources):
        root = sources
    else:
        stem = os.path.basename(sources).split(".tar")[0]
        target = os.path.join(cache_dir or DEFAULT_CACHE, stem)
        root = os.path.join(target, "tflite-micro")
        if not os.path.isdir(os.path.join(root, "tensorflow", "lite", "micro")):
            _log.info("Extracting %s to %s", sources, target)
            os.makedirs(target, exist_ok=True)
            with tarfile.open(sources) as archive:
                archive.extractall(target, filter="data")
    if not os.path.isfile(os.path.join(root, "tensorflow", "lite", "micro", "tools", "make", "Makefile")):
        raise ParameterError(
            f"{sources!r} is not a tflite-micro source tree (no tensorflow/lite/micro/tools/make/Makefile)."
        )
    library = os.path.join(root, _LIB.format(cpu=BOARD["cpu"]))
    if os.path.isfile(library):
        return {"root": root, "library": library, "built_s": 0.0}
    toolchain = os.path.join(root, "tensorflow", "lite", "micro", "tools", "make", "downloads", "gcc_embedded", "bin")
    os.makedirs(toolchain, exist_ok=True)
    gcc_dir = os.path.dirname(shutil.which("arm-none-eabi-g++"))
    for tool in glob.glob(os.path.join(gcc_dir, "arm-none-eabi-*")):
        link = os.path.join(toolchain, os.path.basename(tool))
        if not os.path.lexists(link):
            os.symlink(tool, link)
    _log.info("Building libtensorflow-microlite.a for %s in %s (about 15 min on 2 cores, once)", BOARD["cpu"], root)
    start = time.perf_counter()
    # Its makefiles run Python scripts that import numpy and Pillow: this interpreter's are on PATH first.
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    command = [
        "make",
        "-f",
        "tensorflow/lite/micro/tools/make/Makefile",
        "TARGET=cortex_m_qemu",
        f"TARGET_ARCH={BOARD['cpu']}",
        f"-j{os.cpu_count() or 1}",
        "microlite",
    ]
    result = subprocess.run(command, cwd=root, env=env, text=True, capture_output=not progress)
    if result.returncode != 0 or not os.path.isfile(library):
        raise ConversionError(
            f"Building TFLite Micro failed ({' '.join(command)} in {root}): {(result.stderr or '')[-2000:]}"
        )
    return {"root": root, "library": library, "built_s": time.perf_counter() - start}


def elf_sizes(elf_path) -> dict:
    """Section sizes of a firmware ELF (``arm-none-eabi-size -A``) and the board figures.

    Returns:
        ``{'text', 'rodata', 'data', 'bss', 'flash_bytes', 'ram_bytes'}``: ``flash_bytes`` is
        everything stored (code, read-only data, unwind tables, init arrays, the initial values
        of ``.data``), ``ram_bytes`` is ``.data + .bss`` (the static tensor arena included).
    """
    result = subprocess.run(
        ["arm-none-eabi-size", "-A", os.fspath(elf_path)], capture_output=True, text=True, check=True
    )
    sections = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    flash_sections = (".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".init_array", ".data")
    sizes = {key: sections.get("." + key, 0) for key in ("text", "rodata", "data", "bss")}
    sizes["flash_bytes"] = sum(sections.get(name, 0) for name in flash_sections)
    sizes["ram_bytes"] = sizes["data"] + sizes["bss"]
    return sizes


def parse_runner_output(text: str) -> dict:
    """The runner's semihosting output -> ``{'outputs': [arrays], 'arena_used_bytes', 'arena_needed_bytes'}``."""
    outputs = []
    for match in _OUTPUT_LINE.finditer(text):
        kind, words = match.group(2), match.group(4).split()
        if kind == "FLOAT32":
            outputs.append(np.array([int(word, 16) for word in words], np.uint32).view(np.float32))
        else:
            dtype = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32}[kind]
            outputs.append(np.array([int(word) for word in words], dtype))
    used, small = _ARENA_LINE.search(text), _TOO_SMALL_LINE.search(text)
    return {
        "outputs": outputs,
        "arena_used_bytes": int(used.group(1)) if used else None,
        "arena_needed_bytes": int(small.group(2)) if small else None,
    }


def micro_build(
    project_dir, *, tflm=None, cache_dir=None, run: bool = True, timeout_s: float = 900, progress: bool = False
) -> dict:
    """Build a :func:`write_micro_project` folder and run it on the emulated board.

    Args:
        project_dir: The project folder.
        tflm: TFLite Micro tarball or tree (see :func:`prepare_tflm`).
        cache_dir: Where a tarball is extracted and the library cached.
        run: Run the firmware in ``qemu-system-arm`` and compare with the host interpreter.
        timeout_s: Limit of the emulated run in seconds.
        progress: Show the library build's output.

    Returns:
        ``{'elf', 'board', 'sizes', 'arena_bytes', 'build_s', 'library_built_s'}`` and, when run,
        ``'on_board'`` (``{'outputs', 'arena_used_bytes', 'run_s'}``), ``'host'`` (the host interpreter's
        outputs) and ``'bit_exact'``; ``ram_used_bytes`` = ``.data + .bss`` less the unused arena.
        Written to ``micro_build.json`` in the project; the flash, RAM and arena figures also go
        into the micro report ``<name>_micro.json`` of :func:`to_micro` (key ``on_board``).

    Raises:
        ParameterError: missing tool (naming its Debian package), no sources, a firmware over the
            board's flash or RAM (both figures), or an arena too small on the board (the size needed).
        ConversionError: the build or the run failed.
    """
    project_dir = os.path.abspath(os.fspath(project_dir))
    record_path = os.path.join(project_dir, PROJECT_FILE)
    if not os.path.isfile(record_path):
        raise ParameterError(f"{project_dir!r} is not a micro project (no {PROJECT_FILE}); write one first.")
    with open(record_path) as handle:
        project = json.load(handle)
    tools = check_toolchain()
    library = prepare_tflm(tflm, cache_dir=cache_dir, progress=progress)
    name = project["name"]
    elf = os.path.join(project_dir, f"{name}.elf")
    start = time.perf_counter()
    result = subprocess.run(
        [
            "make",
            "-C",
            project_dir,
            f"TFLM={library['root']}",
            f"TFLM_LIB={library['library']}",
            f"-j{os.cpu_count() or 1}",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        overflow = re.search(r"region `(\w+)' overflowed by (\d+) bytes|RAM overflowed", result.stderr)
        if overflow:
            raise ParameterError(
                f"The firmware does not fit the {BOARD['name']} board "
                f"({BOARD['flash_bytes']:,} bytes flash, {BOARD['ram_bytes']:,} bytes RAM): "
                f"{overflow.group(0)}."
            )
        raise ConversionError(f"Building the firmware failed: {result.stderr[-3000:]}")
    report = {
        "elf": elf,
        "board": BOARD["name"],
        "sizes": elf_sizes(elf),
        "build_s": time.perf_counter() - start,
        "library_built_s": library["built_s"],
        "arena_bytes": project["arena_bytes"],
    }
    sizes = report["sizes"]
    _board_fit(sizes["flash_bytes"], sizes["ram_bytes"] + _STACK_BYTES, "The firmware")
    if run:
        report.update(_run_on_board(elf, project, project_dir, tools["qemu-system-arm"], timeout_s))
        report["ram_used_bytes"] = sizes["ram_bytes"] - project["arena_bytes"] + report["on_board"]["arena_used_bytes"]
    write_json(os.path.join(project_dir, "micro_build.json"), report)
    _add_to_report(os.path.join(project_dir, f"{name}_micro.json"), report)
    return report


def _add_to_report(micro_path: str, report: dict) -> None:
    """Write the board's figures into the micro report of :func:`to_micro` (``<name>_micro.json``), beside the host's."""
    if not os.path.isfile(micro_path):
        return
    with open(micro_path) as handle:
        micro = json.load(handle)
    sizes = report["sizes"]
    micro["on_board"] = {
        "board": report["board"],
        "flash_bytes": sizes["flash_bytes"],
        "ram_bytes": sizes["ram_bytes"],
        "arena_bytes": report["arena_bytes"],
    }
    if "on_board" in report:
        micro["on_board"].update(
            arena_used_bytes=report["on_board"]["arena_used_bytes"],
            ram_used_bytes=report["ram_used_bytes"],
            bit_exact_with_host=report["bit_exact"],
        )
    write_json(micro_path, micro)


def _run_on_board(elf: str, project: dict, project_dir: str, qemu: str, timeout_s: float) -> dict:
    command = [
        qemu,
        "-M",
        BOARD["name"],
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
        elf,
    ]
    start = time.perf_counter()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"The firmware did not finish in {timeout_s:.0f} s on the emulated board.") from None
    seconds = time.perf_counter() - start
    parsed = parse_runner_output(result.stdout)
    if parsed["arena_needed_bytes"] is not None or result.returncode == 3:
        raise ParameterError(
            f"The tensor arena is too small on the board: {project['arena_bytes']:,} bytes given, "
            f"{parsed['arena_needed_bytes'] or 0:,} bytes needed (arena_bytes / CLI --arena-bytes)."
        )
    if result.returncode != 0 or parsed["arena_used_bytes"] is None:
        raise ConversionError(
            f"The firmware failed on the board (status {result.returncode}): {(result.stdout + result.stderr)[-2000:]}"
        )
    # The host interpreter on the same model and input (the project's copies).
    micro = project["micro"]
    with open(os.path.join(project_dir, project["files"]["model"]), "rb") as handle:
        content = handle.read()
    inputs = np.load(os.path.join(project_dir, project["files"]["input_npy"]))
    host = np.asarray(micro_run(content, inputs)).ravel()
    board = parsed["outputs"][0]
    return {
        "on_board": {
            "outputs": [o.tolist() for o in parsed["outputs"]],
            "arena_used_bytes": parsed["arena_used_bytes"],
            "run_s": seconds,
        },
        "host": {"outputs": [host.tolist()], "arena_used_bytes": micro["arena_used_bytes"]},
        "bit_exact": bool(board.shape == host.shape and np.array_equal(board.view(np.uint8), host.view(np.uint8))),
        "max_abs_diff": float(np.max(np.abs(board.astype(np.float64) - host.astype(np.float64))))
        if board.shape == host.shape
        else None,
    }
