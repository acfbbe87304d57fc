# Entropy-driven exploration in RL for LLM reasoning: a reproduction pipeline.
#
#   data -> base model -> base-model sampling -> RL training (methods x seeds)
#        -> Pass@K sampling and scoring -> tables and figures
#
# Every rule is a `shell:` call of the package CLI (`python -m pipeline <stage>`), gets
# only the config slice it uses through `params:` (plus a hash of the code it runs), and
# has a `log:` and a `benchmark:`. Run `snakemake -n` to see what would run and why.

from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless the user names config files (`--configfile X`): then those
# alone define the run, instead of being merged into the default's suites and methods.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"



report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/base_model.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/analyze.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        rules.tables.output,
        rules.figures.output,
        rules.paired_bootstrap.output,
        rules.crossing.output,
        rules.passk_curves.output,
        rules.claims.output,
        rules.report_md.output,
        EXPLORATION_OUTPUTS,
