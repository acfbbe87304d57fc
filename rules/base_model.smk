# The base model. Toy world: a tiny Llama built and SFT-trained from scratch. Hub world:
# the pretrained model at a pinned revision (or a local mirror). Either way it ends up as
# a save_pretrained directory that every later rule loads with from_pretrained.

if config["world"] == "toy":

    # One base model, or (base_model.replicates) one per seed: results/models/base/seed<s>,
    # SFT'd with seed base_model.sft.seed + s.
    rule build_base_model:
        input:
            suites=rules.prepare_data.output.suites,
        output:
            model=directory(f"{RESULTS}/models/base/seed{{seed}}" if BASE_REPLICATES else f"{RESULTS}/models/base"),
            metrics=f"{RESULTS}/base_model/seed{{seed}}/sft_metrics.json" if BASE_REPLICATES else f"{RESULTS}/base_model/sft_metrics.json",
        params:
            cfg=lambda wc: as_json(
                {**config["base_model"], "sft": {**config["base_model"]["sft"], "seed": config["base_model"]["sft"]["seed"] + int(wc.seed)}}
                if BASE_REPLICATES else config["base_model"]
            ),
            world=as_json(config["toy"]),
            template=lambda wc: config["prompt"]["template"],  # a function: "{problem}" is not a wildcard
            code=code_hash("build-base-model"),
        threads: config["threads"]["build_base_model"]
        conda:
            ENV
        log:
            f"{LOGS}/build_base_model/seed{{seed}}.log" if BASE_REPLICATES else f"{LOGS}/build_base_model.log",
        benchmark:
            f"{BENCH}/build_base_model/seed{{seed}}.tsv" if BASE_REPLICATES else f"{BENCH}/build_base_model.tsv"
        shell:
            "{PY} -m pipeline build-base-model --config-json {params.cfg:q} --world-json {params.world:q} --template {params.template:q}"
            " --exclude {input.suites:q} --out {output.model:q} --metrics {output.metrics:q}"
            " --threads {threads} 2> {log:q}"

else:

    rule build_base_model:
        output:
            model=directory(f"{RESULTS}/models/base"),
        params:
            hub=as_json(config["base_model"].get("hub")),
            code=code_hash("fetch-base-model"),
        conda:
            ENV
        log:
            f"{LOGS}/build_base_model.log",
        benchmark:
            f"{BENCH}/build_base_model.tsv"
        shell:
            "{PY} -m pipeline fetch-base-model --hub-json {params.hub:q} --out {output.model:q} 2> {log:q}"


# eval_models from the hub: fetched at their pinned revision (the same stage as the hub
# world's base model); a local `path` is read where it is.
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
