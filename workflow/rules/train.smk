# One job per cell: `python -m benchmark.run` -> one JSON. A NaN loss or an unreachable ratio is
# recorded in the JSON (the job succeeds); missing data or weights fail the job with the runner's
# message. With `lr_sweep:`, sweep cells (r<ratio>/lr<lr>/s<seed>) run the grid on the sweep seeds;
# each sweep round (a checkpoint) chooses on validation and may extend the grid one step past an
# edge; the settled lr then runs on the other seeds.


localrules:
    sweep_round,
    select_lr,


rule cell:
    input:
        data=lambda wc: data_marker(study_of(wc), wc.dataset),
        lr=selected_lr,
    output:
        f"{{out}}/runs/{paths.RUN}",
    log:
        f"{{out}}/logs/{log_of(paths.RUN)}",
    benchmark:
        f"{{out}}/benchmarks/{tsv_of(paths.RUN)}"
    group:
        "cells"  # with --group-components cells=N a cluster job runs N cells (docs/cluster.md)
    params:
        python=PYTHON,
        root=DATA_ROOT,
        name=dataset_arg,
        settings=run_args,
        lr=lr_arg,
    conda:
        ENV
    threads: lambda wc: resource(study_of(wc), "threads", 1)
    resources:
        gpu=lambda wc: resource(study_of(wc), "gpus", 0),
        mem_mb=lambda wc: resource(study_of(wc), "mem_mb", 4000),
        runtime=lambda wc: resource(study_of(wc), "runtime", 60),
    shell:
        "OMP_NUM_THREADS={threads} {params.python} -m benchmark.run --dataset {params.name}"
        " --method {wildcards.method} --ratio {wildcards.ratio} --seed {wildcards.seed} {params.lr}"
        " {params.settings} --data-root {params.root} --out {output:q} --force --no-progress > {log:q} 2>&1"


use rule cell as sweep_cell with:
    output:
        f"{{out}}/runs/{paths.SWEEP_RUN}",
    log:
        f"{{out}}/logs/{log_of(paths.SWEEP_RUN)}",
    benchmark:
        f"{{out}}/benchmarks/{tsv_of(paths.SWEEP_RUN)}"


checkpoint sweep_round:
    input:
        round_inputs,
    output:
        f"{{out}}/selected/{paths.SWEEP_ROUND}",
    log:
        f"{{out}}/logs/selected/{log_of(paths.SWEEP_ROUND)}",
    params:
        python=PYTHON,
        grid=lambda wc: " ".join(map(str, studies.sweep_lrs(study_of(wc), wc.method))),
        step=lambda wc: studies.sweep_rule(study_of(wc)).step,
        limit=lambda wc: studies.sweep_rule(study_of(wc)).max_extensions,
    conda:
        ENV
    shell:
        "{params.python} -m benchmark.study choose {input:q} --grid {params.grid} --step {params.step}"
        " --max-extensions {params.limit} --out {output:q} > {log:q} 2>&1"


rule select_lr:
    input:
        last_round,
    output:
        f"{{out}}/selected/{paths.SELECTED_LR}",
    log:
        f"{{out}}/logs/selected/{paths.SELECTED_LR}.log",
    params:
        python=PYTHON,
    conda:
        ENV
    shell:
        "{params.python} -m benchmark.study lr {input:q} --out {output:q} > {log:q} 2>&1"
