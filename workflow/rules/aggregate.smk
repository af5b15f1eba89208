# Every finished cell of a study -> the paper's tables (macro-F1 and accuracy, the comparison with the
# paper's reported numbers, the ablations; 95% intervals over seeds), the claims with their verdicts,
# the paired differences to SH-PEFT and the learning rates chosen on validation (CSV, Markdown, LaTeX).


localrules:
    study_config,


rule study_config:
    output:
        f"{{out}}/{paths.STUDY_RECORD}",
    log:
        "{out}/logs/study.log",
    params:
        study=lambda wc: study_of(wc),  # a changed study rewrites the file (params trigger a rerun)
    run:
        studies.write_study(params.study, output[0])


rule dataset_statuses:
    output:
        "{out}/datasets.yaml",
    log:
        "{out}/logs/datasets.log",
    params:
        python=PYTHON,
        datasets=lambda wc: dataset_list(study_of(wc)),
    conda:
        ENV
    shell:
        "{params.python} -m benchmark.data statuses {params.datasets} --out {output} > {log} 2>&1"


rule aggregate_tables:
    input:
        unpack(study_outputs),
        statuses="{out}/datasets.yaml",
    output:
        report(directory("{out}/tables"), patterns=["{name}.csv"], category=table_category,
               caption="../report/tables.rst"),
    log:
        "{out}/logs/tables.log",
    params:
        python=PYTHON,
        datasets=lambda wc: dataset_list(study_of(wc)),
        backbone=lambda wc: study_of(wc)["backbone"],
        order=lambda wc: " ".join(study_of(wc)["methods"]),
        sparsity=lambda wc, input: f"--sparsity {input.sparsity}" if input.sparsity else "",
    conda:
        ENV
    shell:
        "{params.python} -m analysis tables --runs {wildcards.out}/runs --out {output}"
        " --datasets {params.datasets} --backbone {params.backbone} --order {params.order}"
        " --statuses {input.statuses} --study {input.study} {params.sparsity}"
        " --benchmarks {wildcards.out}/benchmarks > {log} 2>&1"
