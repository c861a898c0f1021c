# Reports: paper-style tables (Markdown, LaTeX, HTML), figures (PNG, SVG) and reports/README.md,
# all from results/. `snakemake --report reports/report.html` then collects the outputs flagged
# report(...) below, with their captions from workflow/report/.
import glob

from prunebench.reporting.plots import figure_names
from prunebench.reporting.results import is_curve_point
from prunebench.reporting.tables import FORMATS, REFERENCE, table_names

# Rendering tables and figures takes seconds: not worth a cluster job's queueing.
localrules:
    report_tables,
    report_figures,
    report_readme,


PPL_DATASETS = config["evaluation"]["perplexity"]["datasets"]
ZEROSHOT = bool(config["evaluation"]["zeroshot"]["tasks"])
BENCHMARKED = bool(config["benchmark"]["enabled"] and METHODS)
PPL = config["evaluation"]["perplexity"]
# Rows of earlier runs (EARLIER) count too: a default run after `make extended` keeps their tables.
SEEDED = any(len(method_seeds(config, m)) > 1 for m in METHODS) or any("@seed" in p for p in EARLIER)
CURVE = any(curve_runs(config, m) for m in MODELS) or any(is_curve_point(p.split("/")[-2]) for p in EARLIER)
ZS = config["evaluation"]["zeroshot"]
DENSE_FULL = PPL["full_for_dense"] or PPL["max_windows"] is None or (ZEROSHOT and ZS["full_for_dense"])
# llama.cpp's numbers of the exported GGUFs (export.smk), and those of earlier runs this config does
# not export (a default run after `make extended`): the report keeps them, as it keeps EARLIER.
LLAMACPP = [t for t in export_targets() if t.endswith(paths.METRICS)]
LLAMACPP_SPEED = [t for t in export_targets() if not t.endswith(paths.METRICS)]
EARLIER_LLAMACPP = sorted(set(glob.glob(f"results/*/**/{paths.LLAMACPP}/{paths.METRICS}", recursive=True))
                          - set(LLAMACPP))
EARLIER_LLAMACPP_SPEED = sorted(set(glob.glob(paths.EFFICIENCY_LLAMACPP.format(model="*"))) - set(LLAMACPP_SPEED))
REPORT_TABLES = table_names(PPL_DATASETS, ZEROSHOT, BENCHMARKED, DENSE_FULL, bool(METHODS), SEEDED,
                            models=len(MODELS), curve=CURVE, deployed=bool(LLAMACPP or EARLIER_LLAMACPP),
                            deployed_speed=bool(LLAMACPP_SPEED or EARLIER_LLAMACPP_SPEED))
REPORT_FIGURES = figure_names(MODELS, bool(PPL_DATASETS), ZEROSHOT, BENCHMARKED, bool(METHODS), CURVE,
                              deployed=bool(LLAMACPP_SPEED or EARLIER_LLAMACPP_SPEED))


def report_inputs(wc):
    """What every report job reads: collate's outputs and the metrics.json files it read, and the
    efficiency measurements."""
    return {"summary": paths.SUMMARY, "seeds": paths.SEEDS, "comparisons": paths.COMPARISONS,
            "correlations": paths.CORRELATIONS,
            "metrics": rules.collate.input.metrics,
            "efficiency": [paths.efficiency_csv(m) for m in MODELS] if BENCHMARKED else [],
            "llamacpp": LLAMACPP, "efficiency_llamacpp": LLAMACPP_SPEED}


def table_caption(name):
    kind = "flap" if name.startswith("flap_") and name != "flap_zeroshot" else name
    return f"../report/table_{kind}.rst"


def table_output(name, fmt):
    path = f"reports/tables/{name}.{fmt}"
    if fmt != "html":
        return path
    return report(path, caption=table_caption(name), category="Tables")


def figure_output(name, fmt):
    path = f"reports/figures/{name}.{fmt}"
    if fmt != "png":
        return path
    return report(path, caption=f"../report/figure_{name.split('_')[0]}.rst", category="Figures")


rule report_tables:
    input:
        unpack(report_inputs),
        reference=str(REFERENCE),
    output:
        [table_output(name, fmt) for name in REPORT_TABLES for fmt in FORMATS],
    params:
        earlier=EARLIER,
        earlier_llamacpp=EARLIER_LLAMACPP,
        earlier_llamacpp_speed=EARLIER_LLAMACPP_SPEED,
    log:
        "results/logs/report/tables.log",
    script:
        "../scripts/report_tables.py"


rule report_figures:
    input:
        unpack(report_inputs),
    output:
        [figure_output(name, fmt) for name in REPORT_FIGURES for fmt in ("png", "svg")],
    params:
        earlier=EARLIER,
        earlier_llamacpp=EARLIER_LLAMACPP,
        earlier_llamacpp_speed=EARLIER_LLAMACPP_SPEED,
    log:
        "results/logs/report/figures.log",
    script:
        "../scripts/report_figures.py"


rule report_readme:
    input:
        unpack(report_inputs),
        tables=expand("reports/tables/{name}.md", name=REPORT_TABLES),
        figures=expand("reports/figures/{name}.svg", name=REPORT_FIGURES),
    output:
        "reports/README.md",
    params:
        earlier=EARLIER,
        earlier_llamacpp=EARLIER_LLAMACPP,
        earlier_llamacpp_speed=EARLIER_LLAMACPP_SPEED,
    log:
        "results/logs/report/readme.log",
    script:
        "../scripts/report_readme.py"
