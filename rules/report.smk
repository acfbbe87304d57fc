# The papers' tables and figures: Pass@K (Table 2 layout with deltas vs each method's
# baseline, Table 3 comparison), the paired bootstrap against the baseline, the base-vs-RL
# crossing point K*, the training dynamics (Fig. 6-7: reward, length, entropy, psi/|A|),
# and REPORT.md assembling them. Outputs marked report(...) go into the Snakemake HTML
# report (`snakemake --report report.html`); their captions live in report/*.rst.

from pipeline.workflow import (
    method_baselines,
    option,
    reference_files,
    report_config,
    reported_options,
)

BASELINES = method_baselines(METHODS, BASELINE_OF)
# Optional `report:` config section (paper-scale runs): reported numbers to show beside
# ours and which of our suites is which reported benchmark; the paired bootstrap's
# resamples and seed; the reported numbers REPORT.md lists for context.
REPORT_SETTINGS = config["report"]  # its defaults filled by the schema
PACKAGE_DIR = os.path.join(workflow.basedir, "pipeline")


rule tables:
    input:
        passk=expand(f"{RESULTS}/scores/{{model}}/{{suite}}.passk.json", model=MODELS, suite=SUITES),
    output:
        md=report(
            f"{RESULTS}/tables/main.md",
            caption="../report/main_table.rst",
            category="Tables",
            labels={"table": "main (Table 2 layout)", "format": "Markdown"},
        ),
        csv=report(
            f"{RESULTS}/tables/main.csv",
            caption="../report/main_table.rst",
            category="Tables",
            labels={"table": "main (Table 2 layout)", "format": "CSV"},
        ),
        tex=f"{RESULTS}/tables/main.tex",
        comparisons=[
            report(
                f"{RESULTS}/tables/{name}.{ext}",
                caption="../report/comparison_table.rst",
                category="Tables",
                labels={"table": name, "format": {"md": "Markdown", "csv": "CSV"}[ext]},
            )
            if ext in ("md", "csv")
            else f"{RESULTS}/tables/{name}.{ext}"
            for name in comparison_tables()
            for ext in ("md", "csv", "tex")
        ],
    params:
        methods=ROWS,
        suites=SUITES,
        comparisons=as_json(comparison_tables()),
        baselines=as_json(BASELINES),
        reported=reported_options(REPORT_SETTINGS, as_json(REPORT_SETTINGS["suite_map"])),
        out_dir=lambda wc, output: os.path.dirname(output.md),
        code=code_hash("tables", data_files=reference_files(REPORT_SETTINGS["reported"], PACKAGE_DIR)),
    conda:
        ENV
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    shell:
        "{PY} -m pipeline tables --passk {input.passk:q} --methods {params.methods:q}"
        " --suites {params.suites:q} --comparisons {params.comparisons:q} --baselines {params.baselines:q}"
        " {params.reported} --out-dir {params.out_dir:q} 2> {log:q}"


rule paired_bootstrap:
    input:
        passk=rules.tables.input.passk,
    output:
        md=report(
            f"{RESULTS}/tables/comparisons.md",
            caption="../report/paired_bootstrap.rst",
            category="Analysis",
            labels={"analysis": "paired bootstrap vs baseline", "format": "Markdown"},
        ),
        csv=report(
            f"{RESULTS}/tables/comparisons.csv",
            caption="../report/paired_bootstrap.rst",
            category="Analysis",
            labels={"analysis": "paired bootstrap vs baseline", "format": "CSV"},
        ),
        tex=f"{RESULTS}/tables/comparisons.tex",
    params:
        baselines=as_json(BASELINES),
        methods=ROWS,
        suites=SUITES,
        bootstrap=REPORT_SETTINGS["bootstrap"],
        seed=REPORT_SETTINGS["seed"],
        out_dir=lambda wc, output: os.path.dirname(output.md),
        code=code_hash("compare"),
    conda:
        ENV
    log:
        f"{LOGS}/paired_bootstrap.log",
    benchmark:
        f"{BENCH}/paired_bootstrap.tsv"
    shell:
        "{PY} -m pipeline compare --passk {input.passk:q} --baselines {params.baselines:q}"
        " --methods {params.methods:q} --suites {params.suites:q} --bootstrap {params.bootstrap}"
        " --seed {params.seed} --out-dir {params.out_dir:q} 2> {log:q}"


rule crossing:
    input:
        passk=rules.tables.input.passk,
    output:
        md=report(
            f"{RESULTS}/tables/crossing.md",
            caption="../report/crossing.rst",
            category="Analysis",
            labels={"analysis": "base-vs-RL crossing point K*", "format": "Markdown"},
        ),
        csv=report(
            f"{RESULTS}/tables/crossing.csv",
            caption="../report/crossing.rst",
            category="Analysis",
            labels={"analysis": "base-vs-RL crossing point K*", "format": "CSV"},
        ),
    params:
        methods=ROWS,
        suites=SUITES,
        out_dir=lambda wc, output: os.path.dirname(output.md),
        code=code_hash("crossing"),
    conda:
        ENV
    log:
        f"{LOGS}/crossing.log",
    benchmark:
        f"{BENCH}/crossing.tsv"
    shell:
        "{PY} -m pipeline crossing --passk {input.passk:q} --methods {params.methods:q}"
        " --suites {params.suites:q} --out-dir {params.out_dir:q} 2> {log:q}"


rule passk_curves:
    input:
        passk=rules.tables.input.passk,
    output:
        md=report(
            f"{RESULTS}/tables/passk_curves.md",
            caption="../report/passk_curves.rst",
            category="Tables",
            labels={"table": "Pass@k and maj@k on the k grid", "format": "Markdown"},
        ),
        csv=report(
            f"{RESULTS}/tables/passk_curves.csv",
            caption="../report/passk_curves.rst",
            category="Tables",
            labels={"table": "Pass@k and maj@k on the k grid", "format": "CSV"},
        ),
        tex=f"{RESULTS}/tables/passk_curves.tex",
    params:
        methods=ROWS,
        suites=SUITES,
        out_dir=lambda wc, output: os.path.dirname(output.md),
        code=code_hash("curves"),
    conda:
        ENV
    log:
        f"{LOGS}/passk_curves.log",
    benchmark:
        f"{BENCH}/passk_curves.tsv"
    shell:
        "{PY} -m pipeline curves --passk {input.passk:q} --methods {params.methods:q}"
        " --suites {params.suites:q} --out-dir {params.out_dir:q} 2> {log:q}"


rule claims:
    input:
        passk=rules.tables.input.passk,
        metrics=expand(f"{RESULTS}/train/{{run}}/metrics.jsonl", run=TRAINED),
        exploration=[f"{RESULTS}/tables/exploration_summary.csv"] if ANALYSIS["enabled"] else [],
        checkpoints=rules.checkpoint_analysis.output.tables if CHECKPOINT_ANALYSIS else [],
    output:
        md=report(
            f"{RESULTS}/tables/claims.md",
            caption="../report/claims.rst",
            category="Summary",
            labels={"table": "claims", "format": "Markdown"},
        ),
        csv=f"{RESULTS}/tables/claims.csv",
        aer=f"{RESULTS}/tables/aer_replicates.csv",
    params:
        runs=TRAINED,
        suites=SUITES,
        methods=as_json(METHODS),
        exploration=lambda wc, input: f"--exploration-summary {input.exploration[0]}" if input.exploration else "",
        checkpoints=lambda wc, input: ("--checkpoints " + " ".join(input.checkpoints)) if input.checkpoints else "",
        name=config["run_name"],
        bootstrap=REPORT_SETTINGS["bootstrap"],
        seed=REPORT_SETTINGS["seed"],
        out_dir=lambda wc, output: os.path.dirname(output.md),
        code=code_hash("claims"),
    conda:
        ENV
    log:
        f"{LOGS}/claims.log",
    benchmark:
        f"{BENCH}/claims.tsv"
    shell:
        "{PY} -m pipeline claims --passk {input.passk:q} --metrics {input.metrics:q} --metrics-runs {params.runs:q}"
        " --methods-json {params.methods:q} --suites {params.suites:q} {params.exploration} {params.checkpoints}"
        " --config-name {params.name:q} --bootstrap {params.bootstrap} --seed {params.seed}"
        " --out-dir {params.out_dir:q} 2> {log:q}"


rule figures:
    input:
        passk=rules.tables.input.passk,
        metrics=expand(f"{RESULTS}/train/{{run}}/metrics.jsonl", run=TRAINED),
    output:
        passk=[
            report(
                f"{RESULTS}/figures/passk_{suite}.png",
                caption="../report/passk.rst",
                category="Figures",
                labels={"figure": "Pass@k curve", "suite": suite},
            )
            for suite in SUITES
        ],
        dynamics=report(
            f"{RESULTS}/figures/training_dynamics.png",
            caption="../report/training_dynamics.rst",
            category="Figures",
            labels={"figure": "training dynamics", "suite": "(training)"},
        ),
        entropy=report(
            f"{RESULTS}/figures/entropy_control.png",
            caption="../report/entropy_control.rst",
            category="Figures",
            labels={"figure": "entropy control", "suite": "(training)"},
        ),
    params:
        runs=TRAINED,
        methods=ROWS,
        # Fig. "entropy control": GRPO and the entropy-control strategies (all methods if none)
        entropy_methods=comparison_tables().get("entropy_control", list(METHODS)),
        out_dir=lambda wc, output: os.path.dirname(output.dynamics),
        code=code_hash("figures"),
    conda:
        ENV
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCH}/figures.tsv"
    shell:
        "{PY} -m pipeline figures --passk {input.passk:q} --metrics {input.metrics:q}"
        " --metrics-runs {params.runs:q} --methods {params.methods:q} --entropy-methods {params.entropy_methods:q}"
        " --out-dir {params.out_dir:q} 2> {log:q}"


rule report_md:
    input:
        tables=[rules.tables.output.md, *expand(f"{RESULTS}/tables/{{name}}.md", name=list(comparison_tables()))],
        comparisons=rules.paired_bootstrap.output.md,
        crossing=rules.crossing.output.md,
        curves=rules.passk_curves.output.md,
        claims=rules.claims.output.md,
        figures=rules.figures.output,
        exploration=EXPLORATION_MD,
        exploration_figures=EXPLORATION_FIGURES,
        # each records the machine it was computed on (the report's "where computed" section)
        machines=[*expand(f"{RESULTS}/samples/{{model}}/{{suite}}.parquet", model=MODELS, suite=SUITES),
                  *(expand(rules.build_base_model.output.metrics, seed=SEEDS) if TOY and BASE_MODELS else [])],
    output:
        md=report(
            f"{RESULTS}/REPORT.md",
            caption="../report/report_md.rst",
            category="Summary",
            labels={"file": "REPORT.md"},
        ),
    params:
        config=as_json(report_config(config, ROWS, BASELINES, SEEDS, SUITES)),
        paper_context=option("--paper-context", REPORT_SETTINGS["paper_context"]),
        code=code_hash("report", data_files=reference_files(REPORT_SETTINGS["paper_context"], PACKAGE_DIR)),
    conda:
        ENV
    log:
        f"{LOGS}/report_md.log",
    benchmark:
        f"{BENCH}/report_md.tsv"
    shell:
        "{PY} -m pipeline report --tables {input.tables:q} --comparisons {input.comparisons:q}"
        " --crossing {input.crossing:q} --curves {input.curves:q} --claims {input.claims:q} --figures {input.figures:q} --config {params.config:q}"
        " {params.paper_context} --exploration-tables {input.exploration:q}"
        " --exploration-figures {input.exploration_figures:q} --machines {input.machines:q} --out {output.md:q} 2> {log:q}"
