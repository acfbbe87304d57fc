# Data preparation: evaluation suites and the RL training split, in one normalised schema
# (id, problem, answer, difficulty, source), whichever world they come from.

if config["world"] == "toy":

    rule prepare_data:
        output:
            suites=expand(f"{RESULTS}/data/suites/{{suite}}.parquet", suite=SUITES),
            train=f"{RESULTS}/data/train.parquet",
        params:
            world=config["world"],
            world_cfg=as_json(config["toy"]),
            suites_cfg=as_json(suites_data_slice()),
            suites_dir=lambda wc, output: os.path.dirname(output.suites[0]),
            code=code_hash("prepare-data"),
        conda:
            ENV
        log:
            f"{LOGS}/prepare_data.log",
        benchmark:
            f"{BENCH}/prepare_data.tsv"
        shell:
            "{PY} -m pipeline prepare-data --world {params.world:q} --world-json {params.world_cfg:q}"
            " --suites-json {params.suites_cfg:q} --suites-dir {params.suites_dir:q}"
            " --train-out {output.train:q} 2> {log:q}"

else:

    # Real benchmarks through `datasets` at pinned revisions (or local mirrors), row counts
    # asserted, and the training set checked for overlap with every evaluation suite.
    rule prepare_data:
        output:
            suites=expand(f"{RESULTS}/data/suites/{{suite}}.parquet", suite=SUITES),
            # no training set when nothing is trained (eval_models only)
            train=f"{RESULTS}/data/train.parquet" if METHODS else [],
            decontamination=f"{RESULTS}/data/decontamination.json",
        params:
            suites_cfg=as_json(suites_data_slice()),
            train_cfg=as_json(config["train_data"] if METHODS else None),
            train_out=lambda wc, output: f"--train-out {output.train}" if METHODS else "",
            fail="--fail-on-overlap" if config["decontamination"]["fail"] else "",
            suites_dir=lambda wc, output: os.path.dirname(output.suites[0]),
            code=code_hash("prepare-hub-data"),
        conda:
            ENV
        log:
            f"{LOGS}/prepare_data.log",
        benchmark:
            f"{BENCH}/prepare_data.tsv"
        shell:
            "{PY} -m pipeline prepare-hub-data --suites-json {params.suites_cfg:q} --train-json {params.train_cfg:q}"
            " {params.fail} --suites-dir {params.suites_dir:q} {params.train_out}"
            " --report {output.decontamination:q} 2> {log:q}"
