# shpeft-bench: `snakemake --cores 8 all` runs the paper's grid (workflow/config/paper.yaml)
# from data to report; `snakemake --cores 2 smoke` runs the same DAG on tiny synthetic data.
# Another study: `snakemake --cores 8 all --config study_file=workflow/config/cpu.yaml` (other --config
# keys replace that study's settings: `--config checkpoint=W`); `--configfile X` runs exactly X's grid.
from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/analysis.smk"


# Targets name every cell too: snakemake does not recreate a missing intermediate file whose
# dependents are up to date, so a deleted result is rerun (with its aggregates) only if asked for.


rule all:
    input:
        f"{MAIN['output']}/report.md",
        cell_files(MAIN),
        selected_files(MAIN),


rule tables:
    input:
        f"{MAIN['output']}/tables",
        cell_files(MAIN),
        selected_files(MAIN),


rule figures:
    input:
        f"{MAIN['output']}/figures",
        sparsity_outputs(MAIN),
        cell_files(MAIN),
        selected_files(MAIN),


rule smoke:
    input:
        f"{SMOKE['output']}/report.md",
        cell_files(SMOKE),
        selected_files(SMOKE),
