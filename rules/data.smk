# Data preparation: evaluation suites and the RL training split, in one normalised schema
# (id, problem, answer, difficulty, source), whichever world they come from. The toy world
# generates them from seeds; the hub world loads the real benchmarks through `datasets` at
# pinned revisions (or local mirrors), asserts row counts and checks the training set for
# overlap with every evaluation suite (data_options in common.smk).


rule prepare_data:
    input:
        custom=custom_data_files(),  # your own suite or training files: an edit reruns the data stage
    output:
        suites=expand(f"{RESULTS}/data/suites/{{suite}}.parquet", suite=SUITES),
        # the hub world has no training set when nothing is trained (eval_models only)
        train=f"{RESULTS}/data/train.parquet" if TOY or METHODS else [],
        decontamination=[] if TOY else f"{RESULTS}/data/decontamination.json",
    params:
        stage="prepare-data" if TOY else "prepare-hub-data",
        options=lambda wc, output: data_options(output),
        code=code_hash("prepare-data" if TOY else "prepare-hub-data"),
    conda:
        ENV
    log:
        f"{LOGS}/prepare_data.log",
    benchmark:
        f"{BENCH}/prepare_data.tsv"
    shell:
        "{PY} -m pipeline {params.stage} {params.options} 2> {log:q}"
