# Figures (trainable ratio vs F1), the sparsity/hybridity analysis of fully fine-tuned
# models, and the report that assembles everything.


rule draw_figures:
    input:
        runs=lambda wc: cell_files(STUDIES[wc.out]),
    output:
        directory("{out}/figures"),
    log:
        "{out}/logs/figures.log",
    params:
        python=PYTHON,
        datasets=lambda wc: dataset_list(STUDIES[wc.out]),
        backbone=lambda wc: STUDIES[wc.out]["backbone"],
        order=lambda wc: " ".join(STUDIES[wc.out]["methods"]),
    conda:
        ENV
    shell:
        "{params.python} -m analysis figures --runs {wildcards.out}/runs --out {output}"
        " --datasets {params.datasets} --backbone {params.backbone} --order {params.order} > {log} 2>&1"


rule finetune_for_sparsity:
    input:
        lambda wc: data_marker(STUDIES[wc.out], wc.dataset),
    output:
        result="{out}/finetuned/{dataset}.json",
        state="{out}/finetuned/{dataset}.safetensors",
    log:
        "{out}/logs/finetuned/{dataset}.log",
    params:
        python=PYTHON,
        root=DATA_ROOT,
        name=dataset_arg,
        settings=lambda wc: run_args(STUDIES[wc.out], "full"),
    conda:
        ENV
    threads: lambda wc: resource(STUDIES[wc.out], "threads", 1)
    resources:
        gpu=lambda wc: resource(STUDIES[wc.out], "gpus", 0),
        mem_mb=lambda wc: resource(STUDIES[wc.out], "mem_mb", 4000),
        runtime=lambda wc: resource(STUDIES[wc.out], "runtime", 60),
    shell:
        "OMP_NUM_THREADS={threads} {params.python} -m benchmark.run --dataset {params.name} --method full"
        " --seed 0 {params.settings} --data-root {params.root} --out {output.result}"
        " --save-state {output.state} --force --no-progress > {log} 2>&1"


rule sparsity_analysis:
    input:
        runs=lambda wc: expand("{out}/finetuned/{d}.json", out=wc.out, d=map(dataset_tag, STUDIES[wc.out]["datasets"])),
        states=lambda wc: expand("{out}/finetuned/{d}.safetensors", out=wc.out, d=map(dataset_tag, STUDIES[wc.out]["datasets"])),
    output:
        directory("{out}/sparsity"),
    log:
        "{out}/logs/sparsity.log",
    params:
        python=PYTHON,
        root=DATA_ROOT,
        keep=lambda wc: " ".join(str(p) for p in STUDIES[wc.out]["sparsity"]["keep_fractions"]),
    conda:
        ENV
    shell:
        "({params.python} -m benchmark.sparsity --runs {input.runs} --states {input.states}"
        " --out {output} --keep {params.keep} --data-root {params.root}"
        " && {params.python} -m analysis sparsity --in {output}) > {log} 2>&1"


rule write_report:
    input:
        tables="{out}/tables",
        figures="{out}/figures",
        sparsity=lambda wc: sparsity_outputs(STUDIES[wc.out]),
        statuses="{out}/datasets.yaml",
    output:
        "{out}/report.md",
    log:
        "{out}/logs/report.log",
    params:
        python=PYTHON,
        datasets=lambda wc: dataset_list(STUDIES[wc.out]),
        order=lambda wc: " ".join(STUDIES[wc.out]["methods"]),
    conda:
        ENV
    shell:
        "{params.python} -m analysis report --results {wildcards.out} --datasets {params.datasets}"
        " --order {params.order} --statuses {input.statuses} > {log} 2>&1"
