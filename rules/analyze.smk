# Exploration analysis (docs/methods.md §9; Cheng et al. §2 and Fig. 8): where the entropy sits in the
# responses. Per-token entropies of stored samples recomputed by the model that produced
# them (one job for all analysed models: a job's start-up costs more than a toy model's
# pass), then pivotal-token categories, reflective segments and rare sentences (kNN to the
# base model's), and the same quantities across training snapshots (Fig. 8) for the analysed
# runs that keep snapshots (training.snapshot_every > 0).

import shlex

from pipeline.workflow import (
    PASS_KEYS,
    STAGE_KEYS,
    TEXT_KEYS,
    TOKEN_KEYS,
    analysed_pairs,
    analysed_runs,
    analysis_suite,
    slice_keys,
)

ANALYSIS = config["analysis"]
ANALYSIS_SUITE = analysis_suite(config)
ANALYSED_RUNS = analysed_runs(config)
# the base model of the first analysed seed's world (its replicate, with base_model.replicates)
ANALYSIS_BASE = f"base/seed{analysed_pairs(config)[1][0]}" if BASE_REPLICATES else "base"
ANALYSED_MODELS = ["base"] + ANALYSED_RUNS  # the analysis calls it "base" either way
# where each analysed model lives under results/models and results/samples
ANALYSED_PATHS = {m: (ANALYSIS_BASE if m == "base" else m) for m in ANALYSED_MODELS}

ANALYSED_METHODS, ANALYSED_SEEDS = analysed_pairs(config)
CHECKPOINT_SUITE = ANALYSIS["checkpoints"]["suite"] or ANALYSIS_SUITE
# Snapshots: an output of rule train, filled when the run's training.snapshot_every > 0.
CHECKPOINT_RUNS = [
    (m, s)
    for m, s in zip(ANALYSED_METHODS, ANALYSED_SEEDS)
    if METHODS[m]["training"].get("snapshot_every", 0) > 0 and hasattr(rules.train.output, "snapshots")
]
CHECKPOINT_ANALYSIS = bool(ANALYSIS["checkpoints"]["enabled"] and CHECKPOINT_RUNS)
ANALYSIS_DIR = f"{RESULTS}/analysis"


rule token_entropy:
    input:
        models=[f"{RESULTS}/models/{ANALYSED_PATHS[m]}" for m in ANALYSED_MODELS],
        samples=[f"{RESULTS}/samples/{ANALYSED_PATHS[m]}/{ANALYSIS_SUITE}.parquet" for m in ANALYSED_MODELS],
        problems=f"{RESULTS}/data/suites/{ANALYSIS_SUITE}.parquet",
    output:
        tokens=[f"{ANALYSIS_DIR}/tokens/{m}.parquet" for m in ANALYSED_MODELS],
    params:
        names=ANALYSED_MODELS,
        cfg=as_json(slice_keys(ANALYSIS, TOKEN_KEYS)),
        template=lambda wc: config["prompt"]["template"],  # a function: "{problem}" is not a wildcard
        chat="--chat-template" if config["prompt"]["chat_template"] else "",
        trust="--trust-remote-code" if config["base_model"]["trust_remote_code"] else "",
        code=code_hash("token-entropy"),
    threads: config["threads"]["analyze"]
    resources:
        gpu=config["resources"]["analyze"]["gpu"],
        mem_mb=config["resources"]["analyze"]["mem_mb"],
        runtime=config["resources"]["analyze"]["runtime"],
    conda:
        ENV
    log:
        f"{LOGS}/token_entropy.log",
    benchmark:
        f"{BENCH}/token_entropy.tsv"
    shell:
        "{PY} -m pipeline token-entropy --model {input.models:q} --model-name {params.names:q}"
        " --samples {input.samples:q} --problems {input.problems:q} --analysis-json {params.cfg:q}"
        " --template {params.template:q} {params.chat} {params.trust} --out {output.tokens:q}"
        " --threads {threads} 2> {log:q}"


if CHECKPOINT_ANALYSIS:

    rule checkpoint_analysis:
        input:
            snapshots=[rules.train.output.snapshots.format(method=m, seed=s) for m, s in CHECKPOINT_RUNS],
            problems=f"{RESULTS}/data/suites/{CHECKPOINT_SUITE}.parquet",
        output:
            tables=[f"{ANALYSIS_DIR}/checkpoints/{m}/seed{s}.csv" for m, s in CHECKPOINT_RUNS],
        params:
            runs=[f"{m}/seed{s}" for m, s in CHECKPOINT_RUNS],
            cfg=as_json({**slice_keys(ANALYSIS, PASS_KEYS + TEXT_KEYS), "checkpoints": ANALYSIS["checkpoints"]}),
            sampling=as_json(config["sampling"]),
            template=lambda wc: config["prompt"]["template"],
            chat="--chat-template" if config["prompt"]["chat_template"] else "",
            trust="--trust-remote-code" if config["base_model"]["trust_remote_code"] else "",
            grader=config["grader"],
            timeout=config["grading"]["timeout_s"],
            code=code_hash("analyze-checkpoints", config["grader"]),
        threads: config["threads"]["analyze"]
        resources:
            gpu=config["resources"]["analyze"]["gpu"],
            mem_mb=config["resources"]["analyze"]["mem_mb"],
            runtime=config["resources"]["analyze"]["runtime"],
        conda:
            ENV
        log:
            f"{LOGS}/checkpoint_analysis.log",
        benchmark:
            f"{BENCH}/checkpoint_analysis.tsv"
        shell:
            "{PY} -m pipeline analyze-checkpoints --snapshots {input.snapshots:q} --run {params.runs:q}"
            " --problems {input.problems:q} --analysis-json {params.cfg:q} --sampling-json {params.sampling:q}"
            " --template {params.template:q} {params.chat} {params.trust} --grader {params.grader:q}"
            " --grading-timeout-s {params.timeout} --out {output.tables:q} --threads {threads} 2> {log:q}"


EXPLORATION_TABLES = ["summary", "pivotal", "reflective", "rare"] + (["checkpoints"] if CHECKPOINT_ANALYSIS else [])


rule exploration_analysis:
    input:
        tokens=rules.token_entropy.output.tokens,
        samples=rules.token_entropy.input.samples,
        base=f"{RESULTS}/models/{ANALYSIS_BASE}",
        checkpoints=rules.checkpoint_analysis.output.tables if CHECKPOINT_ANALYSIS else [],
    output:
        tables=[
            report(
                f"{RESULTS}/tables/exploration_{name}.{ext}",
                caption=f"../report/exploration_{name}.rst",
                category="Exploration analysis",
                labels={"table": name, "format": {"md": "Markdown", "csv": "CSV"}[ext]},
            )
            for name in EXPLORATION_TABLES
            for ext in ("md", "csv")
        ],
        entropy=report(
            f"{RESULTS}/figures/exploration_entropy.png",
            caption="../report/exploration_entropy.rst",
            category="Exploration analysis",
            labels={"figure": "entropy by token category (Fig. 2)"},
        ),
        embeddings=report(
            f"{RESULTS}/figures/exploration_embeddings.png",
            caption="../report/exploration_embeddings.rst",
            category="Exploration analysis",
            labels={"figure": "sentence embeddings, rare sentences (Fig. 3)"},
        ),
        checkpoint_figure=(
            [
                report(
                    f"{RESULTS}/figures/exploration_checkpoints.png",
                    caption="../report/exploration_checkpoints_figure.rst",
                    category="Exploration analysis",
                    labels={"figure": "across training snapshots (Fig. 8)"},
                )
            ]
            if CHECKPOINT_ANALYSIS
            else []
        ),
        sentences=f"{ANALYSIS_DIR}/sentences.parquet",
    params:
        names=ANALYSED_MODELS,
        methods=list(dict.fromkeys(ANALYSED_METHODS)),
        cfg=as_json(slice_keys(ANALYSIS, STAGE_KEYS + TEXT_KEYS)),
        checkpoints=lambda wc, input: ("--checkpoints " + " ".join(shlex.quote(p) for p in input.checkpoints)) if input.checkpoints else "",
        tables_dir=lambda wc, output: os.path.dirname(output.tables[0]),
        figures_dir=lambda wc, output: os.path.dirname(output.entropy),
        trust="--trust-remote-code" if config["base_model"]["trust_remote_code"] else "",
        code=code_hash("analyze"),
    threads: config["threads"]["analyze"]
    resources:
        gpu=config["resources"]["analyze"]["gpu"],
        mem_mb=config["resources"]["analyze"]["mem_mb"],
        runtime=config["resources"]["analyze"]["runtime"],
    conda:
        ENV
    log:
        f"{LOGS}/exploration_analysis.log",
    benchmark:
        f"{BENCH}/exploration_analysis.tsv"
    shell:
        "{PY} -m pipeline analyze --tokens {input.tokens:q} --samples {input.samples:q} --models {params.names:q}"
        " --base-model {input.base:q} --analysis-json {params.cfg:q} {params.checkpoints}"
        " --methods {params.methods:q} --tables-dir {params.tables_dir:q} --figures-dir {params.figures_dir:q}"
        " --sentences-out {output.sentences:q} {params.trust} --threads {threads} 2> {log:q}"


# What rule all and REPORT.md take from here.
EXPLORATION_OUTPUTS = rules.exploration_analysis.output if ANALYSIS["enabled"] else []
EXPLORATION_MD = [f"{RESULTS}/tables/exploration_{name}.md" for name in EXPLORATION_TABLES] if ANALYSIS["enabled"] else []
EXPLORATION_FIGURES = (
    [rules.exploration_analysis.output.entropy, rules.exploration_analysis.output.embeddings]
    + list(rules.exploration_analysis.output.checkpoint_figure)
    if ANALYSIS["enabled"]
    else []
)
