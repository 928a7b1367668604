"""web/ and benchmarks/web_check.py: pinned packages, the import map matches the build, the committed
results, and the check's one-line refusals (no Chromium, a --site that exists). The page itself runs
in `make test-web` (headless Chromium), not here."""

import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")
WEB = os.path.join(REPO, "web")
sys.path.insert(0, BENCHMARKS)

import web_check  # noqa: E402


def test_packages_are_pinned_exactly_and_locked():
    pins = web_check.wanted_versions()
    assert set(pins) == {"@mediapipe/tasks-audio", "@litertjs/core", "@litertjs/wasm-utils"}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", version) for version in pins.values()), pins
    with open(os.path.join(WEB, "package-lock.json")) as handle:
        lock = json.load(handle)["packages"]
    assert {name: lock[f"node_modules/{name}"]["version"] for name in pins} == pins


def test_import_map_points_into_the_folders_the_build_writes():
    with open(os.path.join(WEB, "index.html")) as handle:
        page = handle.read()
    imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', page, re.S).group(1))["imports"]
    with open(os.path.join(WEB, "build.mjs")) as handle:
        build = handle.read()
    pins = web_check.wanted_versions()
    assert set(imports) == set(pins)
    for name, target in imports.items():
        folder, entry = re.fullmatch(r"\./vendor/([\w-]+)/(.+)", target).groups()
        # build.mjs copies `entry` (or the folder holding it) of package `name` into vendor/<folder>/
        copied = re.search(rf"'{folder}': \['{re.escape(name)}', \[([^\]]*)\]\]", build)
        assert copied, (name, folder)
        assert f"'{entry.split('/')[0]}'" in copied.group(1), (name, entry)
    markup = re.sub(r"<!--.*?-->", "", page, flags=re.S)  # no URL of another host outside comments
    assert "cdn" not in markup.lower() and "http" not in markup


def test_committed_results_meet_the_goals():
    with open(os.path.join(BENCHMARKS, "results", "web_check.json")) as handle:
        report = json.load(handle)
    assert report["packages"] == web_check.wanted_versions()
    assert {(row["part"], row["quantize"]) for row in report["rows"]} == {
        (part, quantize) for _, part in web_check.PARTS.values() for quantize in ("float32", "int8")
    }
    for row in report["rows"]:
        assert row["windows_match"] and row["min_cosine"] >= row["goal"] and row["met"], row
    assert report["met"]


def test_without_chromium_the_check_names_the_debian_package(tmp_path):
    with pytest.raises(web_check.ToolMissing, match=r"apt-get install chromium"):
        web_check.find_chromium(str(tmp_path / "no-chromium"))
    result = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "web_check.py"), "--chromium", str(tmp_path / "no-chromium")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("web_check: Chromium not found at ")


def test_an_existing_site_folder_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "web_check.py"), "--site", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"web_check: --site {tmp_path} exists; give a new folder " + (
        "(the check fills it and keeps it)."
    )
