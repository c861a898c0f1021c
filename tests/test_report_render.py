"""The report rules and `snakemake --report` on the committed results fixture, and the rendered
HTML opened in headless Chromium: every table is there and every image decodes with a size."""
from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_snakemake, write_config

FIXTURE = Path(__file__).parent / "fixtures" / "report"
REPORT_RULES = ["report_tables", "report_figures", "report_readme"]
# the fixture's dense model has no full-test-set pass (full_for_dense: false): no "dense" table
# no "dense" table: the fixture's dense row has no full-test-set perplexity (test_report builds one)
# two models (tiny-gqa, tiny-mha): the tables across models too
TABLES = ("main", "paired", "across_models", "transfer", "correlation", "seeds", "flap_wikitext2", "flap_ptb",
          "flap_zeroshot", "cost", "efficiency", "tradeoff", "reference")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, data_root) -> Path:
    """A workdir holding the fixture's results, the report rules run on them (only those rules:
    the checkpoints the results came from are not part of the fixture) and report.html."""
    work = tmp_path_factory.mktemp("report-run")
    shutil.copytree(FIXTURE / "results", work / "results")
    config = yaml.safe_load((FIXTURE / "config.yaml").read_text())
    config["data_dir"] = str(data_root)
    for name, model in config["models"].items():
        model["source"] = f"path:{FIXTURE / 'models' / name}"
    configfile = write_config(work / "config.yaml", config)
    only_reports = ["--allowed-rules", *REPORT_RULES, "--", "reports/README.md"]
    run_snakemake(work, configfile, *only_reports)
    run_snakemake(work, configfile, "--report", "reports/report.html", *only_reports)
    return work


def embedded_results(report: Path) -> dict:
    """The results Snakemake's report embeds: {path: {mime_type, data_uri, caption, ...}}."""
    match = re.search(r"var results = (\{.*?\});\s*</script>", report.read_text(), re.DOTALL)
    return json.loads(match.group(1))


def decode(data_uri: str) -> bytes:
    return base64.b64decode(data_uri.split("base64,", 1)[1])


def test_report_rules_write_every_table_figure_and_the_readme(report_run):
    reports = report_run / "reports"
    for stem in TABLES:
        assert all((reports / "tables" / f"{stem}.{fmt}").stat().st_size > 0 for fmt in ("md", "tex", "html"))
    for stem in ("perplexity", "zeroshot", "speedup", "tradeoff", "structure_tiny-gqa", "structure_tiny-mha"):
        assert (reports / "figures" / f"{stem}.png").read_bytes().startswith(b"\x89PNG")
        assert b"<svg" in (reports / "figures" / f"{stem}.svg").read_bytes()[:2000]
    readme = (reports / "README.md").read_text()
    assert (reports / "tables" / "main.md").read_text() in readme
    for link in re.findall(r"\]\(((?:figures|tables)/[^)]+)\)", readme):
        assert (reports / link).is_file(), link


def test_snakemake_report_embeds_tables_and_figures_with_captions(report_run):
    results = embedded_results(report_run / "reports" / "report.html")
    pages = {Path(p).name: r for p, r in results.items() if r["mime_type"] == "text/html"}
    images = {Path(p).name: r for p, r in results.items() if r["mime_type"] == "image/png"}
    assert set(pages) == {f"{s}.html" for s in TABLES}
    assert len(images) == 6
    for name, r in pages.items():
        assert b"<table>" in decode(r["data_uri"]) and r["caption"], name
    for name, r in images.items():
        assert decode(r["data_uri"]).startswith(b"\x89PNG") and r["caption"], name


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--virtual-time-budget=15000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def check_page(results: dict) -> str:
    """Every embedded table (inline) and image (as the report shows it, a data URI), and a script
    that, once everything has loaded, writes what the browser made of them into the page."""
    sections = []
    for path, r in results.items():
        name = html.escape(Path(path).name)
        if r["mime_type"] == "text/html":
            page = decode(r["data_uri"]).decode()
            body = re.search(r"<body>(.*)</body>", page, re.DOTALL).group(1)
            style = re.search(r"<style>(.*?)</style>", page, re.DOTALL).group(1)
            sections.append(f'<section data-name="{name}"><style>{style}</style>{body}</section>')
        elif r["mime_type"].startswith("image/"):
            sections.append(f'<img data-name="{name}" src="{r["data_uri"]}" style="max-width:1400px">')
    script = """<script>window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({name: i.dataset.name, width: i.naturalWidth,
                                                  height: i.naturalHeight}));
  const tables = [...document.querySelectorAll("section")].map(s => ({name: s.dataset.name,
      tables: s.querySelectorAll("table").length, rows: s.querySelectorAll("tbody tr").length}));
  const out = document.createElement("pre"); out.id = "check";
  out.textContent = JSON.stringify({images, tables}); document.body.appendChild(out);
});</script>"""
    head = '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
    return head + "".join(sections) + script + "</body></html>"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report_run, tmp_path):
    report = report_run / "reports" / "report.html"
    # the report itself: its React app renders the workflow description and the result categories
    dom = chromium("--dump-dom", report.as_uri(), profile=tmp_path / "profile-a").stdout
    assert "PruneBench runs structured pruning methods" in dom
    assert "Tables" in dom and "Figures" in dom
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,900", report.as_uri(), profile=tmp_path / "profile-b")
    assert shot.read_bytes().startswith(b"\x89PNG")

    # its contents: every table has rows and every image decodes to a real size in the browser
    results = embedded_results(report)
    page = tmp_path / "contents.html"
    page.write_text(check_page(results))
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-c").stdout
    check = json.loads(html.unescape(re.search(r'<pre id="check">(.*?)</pre>', dom, re.DOTALL).group(1)))
    assert len(check["tables"]) == len(TABLES) and all(t["tables"] == 1 and t["rows"] >= 2 for t in check["tables"])
    assert len(check["images"]) == 6 and all(i["width"] > 300 and i["height"] > 200 for i in check["images"])
    shot = report_run / "reports" / "contents.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,6000", page.as_uri(), profile=tmp_path / "profile-d")
    from PIL import Image

    with Image.open(shot) as image:
        assert len(np.unique(np.asarray(image.convert("L")))) > 50  # text and plots, not a blank page
