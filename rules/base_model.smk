# The base model. Toy world: a tiny Llama built and SFT-trained from scratch. Hub world:
# the pretrained model at a pinned revision (or a local mirror). Either way it ends up as
# a save_pretrained directory that every later rule loads with from_pretrained.

rule build_base_model:
    input:
        suites=rules.prepare_data.output.suites if TOY else [],
    output:
        model=directory(f"{RESULTS}/models/base/seed{{seed}}" if BASE_REPLICATES else f"{RESULTS}/models/base"),
        metrics=(f"{RESULTS}/base_model/seed{{seed}}/sft_metrics.json" if BASE_REPLICATES else f"{RESULTS}/base_model/sft_metrics.json")
        if TOY else [],
    params:
        stage="build-base-model" if TOY else "fetch-base-model",
        options=lambda wc, input, output, threads: base_model_options(wc, input, output, threads),
        code=code_hash("build-base-model" if TOY else "fetch-base-model"),
    threads: config["threads"]["build_base_model"] if TOY else 1
    conda:
        ENV
    log:
        f"{LOGS}/build_base_model/seed{{seed}}.log" if BASE_REPLICATES else f"{LOGS}/build_base_model.log",
    benchmark:
        f"{BENCH}/build_base_model/seed{{seed}}.tsv" if BASE_REPLICATES else f"{BENCH}/build_base_model.tsv"
    shell:
        "{PY} -m pipeline {params.stage} {params.options} 2> {log:q}"


rule fetch_eval_model:
    output:
        model=directory(f"{RESULTS}/models/eval/{{name}}"),
    params:
        hub=lambda wc: as_json({k: config["eval_models"][wc.name][k] for k in ("repo_id", "revision")}),
        code=code_hash("fetch-base-model"),
    wildcard_constraints:
        name="|".join(n for n, e in config["eval_models"].items() if "repo_id" in e) or "^$",
    conda:
        ENV
    log:
        f"{LOGS}/fetch_eval_model/{{name}}.log",
    benchmark:
        f"{BENCH}/fetch_eval_model/{{name}}.tsv"
    shell:
        "{PY} -m pipeline fetch-base-model --hub-json {params.hub:q} --out {output.model:q} 2> {log:q}"
