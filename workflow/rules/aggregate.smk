# Every finished cell of a study -> the paper's tables (macro-F1 and accuracy, the comparison
# with the paper's reported numbers, the ablations; 95% intervals over seeds), the paired
# differences to SH-PEFT and the learning rates chosen on validation, as CSV, Markdown and LaTeX.


rule dataset_statuses:
    output:
        "{out}/datasets.yaml",
    log:
        "{out}/logs/datasets.log",
    params:
        python=PYTHON,
        datasets=lambda wc: dataset_list(STUDIES[wc.out]),
    conda:
        ENV
    shell:
        "{params.python} -m benchmark.data statuses {params.datasets} --out {output} > {log} 2>&1"


rule aggregate_tables:
    input:
        runs=lambda wc: cell_files(STUDIES[wc.out]),
        statuses="{out}/datasets.yaml",
    output:
        directory("{out}/tables"),
    log:
        "{out}/logs/tables.log",
    params:
        python=PYTHON,
        datasets=lambda wc: dataset_list(STUDIES[wc.out]),
        backbone=lambda wc: STUDIES[wc.out]["backbone"],
        order=lambda wc: " ".join(STUDIES[wc.out]["methods"]),
    conda:
        ENV
    shell:
        "{params.python} -m analysis tables --runs {wildcards.out}/runs --out {output}"
        " --datasets {params.datasets} --backbone {params.backbone} --order {params.order}"
        " --statuses {input.statuses} > {log} 2>&1"
