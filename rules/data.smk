# Data preparation: evaluation suites and the RL training split, in one normalised schema.


rule prepare_data:
    output:
        suites=expand(f"{RESULTS}/data/suites/{{suite}}.parquet", suite=SUITES),
        train=f"{RESULTS}/data/train.parquet",
    params:
        world=config["world"],
        world_cfg=as_json(config["toy"]),
        suites_cfg=as_json(config["suites"]),
        suites_dir=lambda wc, output: os.path.dirname(output.suites[0]),
        code=code_hash(*CORE_CODE, "data/prepare.py", "data/schema.py", "toy/world.py"),
    conda:
        ENV
    log:
        f"{LOGS}/prepare_data.log",
    benchmark:
        f"{BENCH}/prepare_data.tsv"
    shell:
        "python -m pipeline prepare-data --world {params.world:q} --world-json {params.world_cfg:q}"
        " --suites-json {params.suites_cfg:q} --suites-dir {params.suites_dir:q}"
        " --train-out {output.train:q} 2> {log:q}"
