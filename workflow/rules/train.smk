# One job per cell: `python -m benchmark.run` -> one JSON. A NaN loss or an unreachable ratio is
# recorded in the JSON (the job succeeds); missing data or weights fail the job with the runner's
# message. With `lr_sweep:`, sweep cells (r<ratio>/lr<lr>/s<seed>) choose the lr of the other seeds.


localrules:
    select_lr,


rule cell:
    input:
        data=lambda wc: data_marker(STUDIES[wc.out], wc.dataset),
        lr=selected_lr,
    output:
        "{out}/runs/{dataset}/{backbone}/{method}/r{ratio}/s{seed}.json",
    log:
        "{out}/logs/{dataset}/{backbone}/{method}/r{ratio}/s{seed}.log",
    params:
        python=PYTHON,
        root=DATA_ROOT,
        name=dataset_arg,
        settings=lambda wc: run_args(STUDIES[wc.out], wc.method),
        lr=lr_arg,
    conda:
        ENV
    threads: lambda wc: resource(STUDIES[wc.out], "threads", 1)
    resources:
        gpu=lambda wc: resource(STUDIES[wc.out], "gpus", 0),
        mem_mb=lambda wc: resource(STUDIES[wc.out], "mem_mb", 4000),
        runtime=lambda wc: resource(STUDIES[wc.out], "runtime", 60),
    shell:
        "OMP_NUM_THREADS={threads} {params.python} -m benchmark.run --dataset {params.name}"
        " --method {wildcards.method} --ratio {wildcards.ratio} --seed {wildcards.seed} {params.lr}"
        " {params.settings} --data-root {params.root} --out {output:q} --force --no-progress > {log:q} 2>&1"


use rule cell as sweep_cell with:
    output:
        "{out}/runs/{dataset}/{backbone}/{method}/r{ratio}/lr{lr}/s{seed}.json",
    log:
        "{out}/logs/{dataset}/{backbone}/{method}/r{ratio}/lr{lr}/s{seed}.log",


rule select_lr:
    input:
        lambda wc: studies.sweep_inputs(STUDIES[wc.out], DATASETS[wc.dataset], wc.method, wc.ratio),
    output:
        "{out}/selected/{dataset}/{backbone}/{method}/r{ratio}.lr",
    log:
        "{out}/logs/selected/{dataset}/{backbone}/{method}/r{ratio}.log",
    params:
        python=PYTHON,
    conda:
        ENV
    shell:
        "{params.python} -m benchmark.study {input} --out {output:q} > {log:q} 2>&1"
