# One job per (dataset, method, ratio, seed) cell: `python -m benchmark.run` -> one JSON.
# A NaN loss or an unreachable ratio is recorded in the JSON (the job succeeds); missing
# data or weights fail the job with the runner's message.


rule cell:
    input:
        lambda wc: data_marker(STUDIES[wc.out], wc.dataset),
    output:
        "{out}/runs/{dataset}/{backbone}/{method}/r{ratio}/s{seed}.json",
    log:
        "{out}/logs/{dataset}/{backbone}/{method}/r{ratio}/s{seed}.log",
    params:
        python=PYTHON,
        root=DATA_ROOT,
        backbone=lambda wc: backbone_args(STUDIES[wc.out]),
        train=lambda wc: train_args(STUDIES[wc.out]),
    conda:
        ENV
    threads: lambda wc: resource(STUDIES[wc.out], "threads", 1)
    resources:
        gpu=lambda wc: resource(STUDIES[wc.out], "gpus", 0),
        mem_mb=lambda wc: resource(STUDIES[wc.out], "mem_mb", 4000),
        runtime=lambda wc: resource(STUDIES[wc.out], "runtime", 60),
    shell:
        "OMP_NUM_THREADS={threads} {params.python} -m benchmark.run --dataset {wildcards.dataset}"
        " --method {wildcards.method} --ratio {wildcards.ratio} --seed {wildcards.seed}"
        " {params.backbone} {params.train} --data-root {params.root} --out {output}"
        " --force --no-progress > {log} 2>&1"
