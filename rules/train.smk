# RL training: one job per (method, seed). A method is a named combination of an
# advantage estimator, an advantage shaping, a policy loss and a regularizer
# (pipeline/rl/methods.py); the job receives only its own method's resolved spec, so
# changing one method's hyperparameter reruns that method alone.


rule train:
    input:
        base=rules.build_base_model.output.model,
        problems=rules.prepare_data.output.train,
    output:
        model=directory(f"{RESULTS}/models/{{method}}/seed{{seed}}"),
        metrics=f"{RESULTS}/train/{{method}}/seed{{seed}}/metrics.jsonl",
        # policy snapshots every training.snapshot_every rollouts (the checkpoint analysis)
        snapshots=directory(f"{RESULTS}/train/{{method}}/seed{{seed}}/snapshots"),
    params:
        spec=lambda wc: as_json(METHODS[wc.method]),
        template=lambda wc: config["prompt"]["template"],  # a function: "{problem}" is not a wildcard
        grader=config["grader"],
        grading=f"--grading-timeout-s {config['grading']['timeout_s']} --grading-workers {config['grading']['workers']}",
        checkpoints=lambda wc, output: os.path.join(os.path.dirname(output.metrics), "checkpoints"),
        chat="--chat-template" if config["prompt"]["chat_template"] else "",
        trust="--trust-remote-code" if config["base_model"]["trust_remote_code"] else "",
        # several GPUs: one process per GPU through `accelerate launch` (pipeline/rl/distributed.py)
        launcher=trainer_launcher(),
        sharding=f"--sharding {config['distributed']['sharding']}",
        # watching a run: progress lines in the log; TensorBoard scalars when logging.tensorboard
        watch=lambda wc, output: f"--progress-every-s {config['logging']['progress_every_s']}" + (
            f" --tensorboard-dir {os.path.join(os.path.dirname(output.metrics), 'tensorboard')}" if config["logging"]["tensorboard"] else "") + (
            f" --wandb-project {config['logging']['wandb']['project']} --wandb-mode {config['logging']['wandb']['mode']}"
            f" --wandb-dir {os.path.join(os.path.dirname(output.metrics), 'wandb')}" if config["logging"]["wandb"]["project"] else ""),
        code=code_hash("train", config["grader"]),
    threads: config["threads"]["train"]
    resources:
        gpu=config["resources"]["train"]["gpu"],
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
    conda:
        TRAIN_ENV
    log:
        f"{LOGS}/train/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/train/{{method}}/seed{{seed}}.tsv"
    shell:
        "{TRAIN_PY} {params.launcher} train --base-model {input.base:q} --train-problems {input.problems:q}"
        " --method-json {params.spec:q} --seed {wildcards.seed} --template {params.template:q} {params.chat}"
        " --grader {params.grader:q} {params.grading} --out-model {output.model:q} --metrics {output.metrics:q}"
        " --checkpoint-dir {params.checkpoints:q} --snapshot-dir {output.snapshots:q} {params.sharding} {params.trust} {params.watch} --threads {threads} 2> {log:q}"
