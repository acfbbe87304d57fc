# Pass@K evaluation (SPEC §8): n samples per problem from every model, then grading and
# the unbiased Pass@K estimator. Sampling and scoring are separate jobs, so changing K
# or the grader regrades stored samples without sampling again.


rule sample:
    input:
        model=model_dir,
        problems=f"{RESULTS}/data/suites/{{suite}}.parquet",
    output:
        samples=f"{RESULTS}/samples/{{model}}/{{suite}}.parquet",
    params:
        n=lambda wc: config["suites"][wc.suite]["n_samples"],
        sampling=as_json(config["sampling"]),
        template=lambda wc: config["prompt"]["template"],  # a function: "{problem}" is not a wildcard
        seed=lambda wc: stable_seed("sample", wc.model, wc.suite),
        chat="--chat-template" if config["prompt"]["chat_template"] else "",
        trust="--trust-remote-code" if config["base_model"]["trust_remote_code"] else "",
        code=code_hash("sample"),
    threads: config["threads"]["sample"]
    resources:
        gpu=config["resources"]["sample"]["gpu"],
        mem_mb=config["resources"]["sample"]["mem_mb"],
        runtime=config["resources"]["sample"]["runtime"],
    conda:
        SAMPLE_ENV
    log:
        f"{LOGS}/sample/{{model}}/{{suite}}.log",
    benchmark:
        f"{BENCH}/sample/{{model}}/{{suite}}.tsv"
    shell:
        "{SAMPLE_PY} -m pipeline sample --model {input.model:q} --problems {input.problems:q} --n {params.n}"
        " --sampling-json {params.sampling:q} --template {params.template:q} {params.chat} --seed {params.seed}"
        " --out {output.samples:q} {params.trust} --threads {threads} 2> {log:q}"


rule score:
    input:
        samples=rules.sample.output.samples,
        problems=f"{RESULTS}/data/suites/{{suite}}.parquet",
    output:
        verdicts=f"{RESULTS}/scores/{{model}}/{{suite}}.verdicts.parquet",
        passk=f"{RESULTS}/scores/{{model}}/{{suite}}.passk.json",
    params:
        k=lambda wc: config["suites"][wc.suite]["k"],
        grader=config["grader"],
        timeout=config["grading"]["timeout_s"],
        workers=config["grading"]["workers"],
        bootstrap=config["grading"]["bootstrap"],
        code=code_hash("score", config["grader"]),
    conda:
        ENV
    log:
        f"{LOGS}/score/{{model}}/{{suite}}.log",
    benchmark:
        f"{BENCH}/score/{{model}}/{{suite}}.tsv"
    shell:
        "{PY} -m pipeline score --problems {input.problems:q} --samples {input.samples:q}"
        " --model {wildcards.model} --suite {wildcards.suite} --k-max {params.k} --grader {params.grader:q}"
        " --timeout-s {params.timeout} --workers {params.workers} --bootstrap {params.bootstrap}"
        " --out-verdicts {output.verdicts:q} --out-passk {output.passk:q} 2> {log:q}"
