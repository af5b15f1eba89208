# Download (or generate, for synthetic data), verify and decode each dataset once into
# uint8 tensors. Offline, a real dataset fails in seconds with where to get the files.


rule prepare_data:
    output:
        f"{DATA_ROOT}/{{dataset}}/{{size}}/READY",
    log:
        f"{DATA_ROOT}/logs/{{dataset}}_{{size}}.log",
    params:
        python=PYTHON,
        root=lambda wc, output: Path(output[0]).parents[2],  # <root>/<dataset>/<size>/READY
    conda:
        ENV
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "{params.python} -m benchmark.data prepare {wildcards.dataset} --root {params.root}"
        " --size {wildcards.size} 2>&1 | tee {log}"
