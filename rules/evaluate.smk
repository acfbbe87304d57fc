# Pass@K evaluation (docs/methods.md §8): n samples per problem from every model, then grading and
# the unbiased Pass@K estimator. Sampling and scoring are separate jobs, so changing K
# or the grader regrades stored samples without sampling again.


# One sampling job per model for all its suites: a job's start-up (interpreter, torch,
# model load; a vLLM engine at paper scale) cost ~7 s of the ~19 s a toy (model, suite) job
# took. Finished shards are kept per suite under results/cache/samples (keyed by everything
# they depend on), so when one suite's sampling settings change the job resamples only it.
rule sample:
    input:
        model=model_dir,
        problems=[f"{RESULTS}/data/suites/{suite}.parquet" for suite in SUITES],
    output:
        samples=[f"{RESULTS}/samples/{{model}}/{suite}.parquet" for suite in SUITES],
    params:
        n=[config["suites"][suite]["n_samples"] for suite in SUITES],
        sampling=as_json(config["sampling"]),
        template=lambda wc: config["prompt"]["template"],  # a function: "{problem}" is not a wildcard
        seeds=lambda wc: [stable_seed("sample", wc.model, suite) for suite in SUITES],
        cache=lambda wc: [f"{RESULTS}/cache/samples/{wc.model}/{suite}" for suite in SUITES],
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
        f"{LOGS}/sample/{{model}}.log",
    benchmark:
        f"{BENCH}/sample/{{model}}.tsv"
    shell:
        "{SAMPLE_PY} -m pipeline sample --model {input.model:q} --problems {input.problems:q} --n {params.n}"
        " --seed {params.seeds} --out {output.samples:q} --cache-dir {params.cache:q}"
        " --sampling-json {params.sampling:q} --template {params.template:q} {params.chat}"
        " {params.trust} --threads {threads} 2> {log:q}"


rule score:
    input:
        samples=f"{RESULTS}/samples/{{model}}/{{suite}}.parquet",
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
        # verdicts already graded (same grader identity) are reused; finished chunks survive an interrupted job
        verdict_cache=lambda wc: f"{RESULTS}/cache/verdicts/{wc.model}/{wc.suite}",
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
        " --verdict-cache {params.verdict_cache:q}"
        " --out-verdicts {output.verdicts:q} --out-passk {output.passk:q} 2> {log:q}"
