# Every finished cell of a study -> the paper's tables (macro-F1 and accuracy, the comparison
# with the paper's reported numbers, the ablations) as CSV, Markdown and LaTeX.


rule dataset_statuses:
    output:
        "{out}/datasets.yaml",
    params:
        datasets=lambda wc: " ".join(STUDIES[wc.out]["datasets"]),
    shell:
        "{PYTHON} -m benchmark.data statuses {params.datasets} --out {output}"


rule aggregate_tables:
    input:
        runs=lambda wc: cells(STUDIES[wc.out]),
        statuses="{out}/datasets.yaml",
    output:
        directory("{out}/tables"),
    params:
        datasets=lambda wc: " ".join(STUDIES[wc.out]["datasets"]),
        backbone=lambda wc: STUDIES[wc.out]["backbone"],
    shell:
        "{PYTHON} -m analysis tables --runs {wildcards.out}/runs --out {output}"
        " --datasets {params.datasets} --backbone {params.backbone} --statuses {input.statuses}"
