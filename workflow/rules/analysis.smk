# Figures (trainable ratio vs F1), the sparsity/hybridity analysis of fully fine-tuned models (one per
# dataset and seed, at full fine-tuning's chosen lr), and the report that assembles everything.


rule draw_figures:
    input:
        unpack(study_outputs),
    output:
        report(directory("{out}/figures"), patterns=["{name}.png"], category="figures",
               caption="../report/figures.rst"),
    log:
        "{out}/logs/figures.log",
    params:
        python=PYTHON,
        datasets=lambda wc: dataset_list(study_of(wc)),
        backbone=lambda wc: study_of(wc)["backbone"],
        order=lambda wc: " ".join(study_of(wc)["methods"]),
    conda:
        ENV
    shell:
        "{params.python} -m analysis figures --runs {wildcards.out}/runs --out {output}"
        " --datasets {params.datasets} --backbone {params.backbone} --order {params.order}"
        " --study {input.study} > {log} 2>&1"


rule finetune_for_sparsity:
    input:
        data=lambda wc: data_marker(study_of(wc), wc.dataset),
        lr=finetune_lr,
    output:
        result=f"{{out}}/finetuned/{paths.FINETUNED}.json",
        state=f"{{out}}/finetuned/{paths.FINETUNED}.safetensors",
    log:
        f"{{out}}/logs/finetuned/{paths.FINETUNED}.log",
    params:
        python=PYTHON,
        root=DATA_ROOT,
        name=dataset_arg,
        settings=lambda wc: run_args(wc, studies.SPARSITY_METHOD),
        lr=lambda wc, input: f"--lr $(cat {input.lr})" if input.lr else "",
        method=studies.SPARSITY_METHOD,
    conda:
        ENV
    threads: lambda wc: resource(study_of(wc), "threads", 1)
    resources:
        gpu=lambda wc: resource(study_of(wc), "gpus", 0),
        mem_mb=lambda wc: resource(study_of(wc), "mem_mb", 4000),
        runtime=lambda wc: resource(study_of(wc), "runtime", 60),
    shell:
        "OMP_NUM_THREADS={threads} {params.python} -m benchmark.run --dataset {params.name} --method {params.method}"
        " --seed {wildcards.seed} {params.lr} {params.settings} --data-root {params.root} --out {output.result}"
        " --save-state {output.state} --force --no-progress > {log} 2>&1"


rule sparsity_analysis:
    input:
        runs=lambda wc: finetuned(wc, ".json"),
        states=lambda wc: finetuned(wc, ".safetensors"),
    output:
        report(directory("{out}/sparsity"), patterns=["{name}.png"], category="sparsity",
               caption="../report/sparsity.rst"),
    log:
        "{out}/logs/sparsity.log",
    params:
        python=PYTHON,
        root=DATA_ROOT,
        options=sparsity_args,
    conda:
        ENV
    shell:
        "({params.python} -m benchmark.sparsity --runs {input.runs} --states {input.states}"
        " --out {output} {params.options} --data-root {params.root}"
        " && {params.python} -m analysis sparsity --in {output}) > {log} 2>&1"


rule write_report:
    input:
        unpack(study_outputs),
        tables="{out}/tables",
        figures="{out}/figures",
        statuses="{out}/datasets.yaml",
    output:
        "{out}/report.md",
    log:
        "{out}/logs/report.log",
    params:
        python=PYTHON,
        datasets=lambda wc: dataset_list(study_of(wc)),
        order=lambda wc: " ".join(study_of(wc)["methods"]),
    conda:
        ENV
    shell:
        "{params.python} -m analysis report --results {wildcards.out} --datasets {params.datasets}"
        " --order {params.order} --statuses {input.statuses} > {log} 2>&1"
