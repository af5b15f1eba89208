# Fetch (or take from the config's `sources:`, or from `data_mirror:`), verify and decode each dataset
# once into uint8 tensors. A local rule: on a cluster, downloads never run on compute nodes.


localrules:
    prepare_data,


rule prepare_data:
    output:
        f"{DATA_ROOT}/{paths.CACHE_READY}",
    log:
        f"{DATA_ROOT}/logs/{{dataset}}_{{size}}.log",
    params:
        python=PYTHON,
        root=lambda wc, output: Path(output[0]).parents[2],  # <root>/<dataset>/<size>/READY
        name=dataset_arg,
        options=prepare_args,
    conda:
        ENV
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "{params.python} -m benchmark.data prepare {params.name} --root {params.root}"
        " --size {wildcards.size} {params.options} 2>&1 | tee {log}"
