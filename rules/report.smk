# The papers' tables and figures: Pass@K (Table 2 layout, Table 3 comparison) and the
# training dynamics (Fig. 6-7: reward, length, entropy, psi/|A|).


rule tables:
    input:
        passk=expand(f"{RESULTS}/scores/{{model}}/{{suite}}.passk.json", model=MODELS, suite=SUITES),
    output:
        md=f"{RESULTS}/tables/main.md",
        csv=f"{RESULTS}/tables/main.csv",
        tex=f"{RESULTS}/tables/main.tex",
        comparisons=expand(f"{RESULTS}/tables/{{name}}.{{ext}}", name=list(comparison_tables()), ext=["md", "csv", "tex"]),
    params:
        methods=list(METHODS),
        suites=SUITES,
        comparisons=as_json(comparison_tables()),
        out_dir=lambda wc, output: os.path.dirname(output.md),
        code=code_hash(*CORE_CODE, "report/tables.py", "eval/passk.py"),
    conda:
        ENV
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    shell:
        "python -m pipeline tables --passk {input.passk:q} --methods {params.methods:q}"
        " --suites {params.suites:q} --comparisons {params.comparisons:q} --out-dir {params.out_dir:q} 2> {log:q}"


rule figures:
    input:
        passk=rules.tables.input.passk,
        metrics=expand(f"{RESULTS}/train/{{run}}/metrics.jsonl", run=TRAINED),
    output:
        passk=expand(f"{RESULTS}/figures/passk_{{suite}}.png", suite=SUITES),
        dynamics=f"{RESULTS}/figures/training_dynamics.png",
        entropy=f"{RESULTS}/figures/entropy_control.png",
    params:
        runs=TRAINED,
        methods=list(METHODS),
        out_dir=lambda wc, output: os.path.dirname(output.dynamics),
        code=code_hash(*CORE_CODE, "report/figures.py"),
    conda:
        ENV
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCH}/figures.tsv"
    shell:
        "python -m pipeline figures --passk {input.passk:q} --metrics {input.metrics:q}"
        " --metrics-runs {params.runs:q} --methods {params.methods:q} --out-dir {params.out_dir:q} 2> {log:q}"
