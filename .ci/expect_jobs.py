"""Check the 'Job stats' table of a snakemake dry run: exactly the given jobs, nothing else.

    python .ci/expect_jobs.py dryrun.txt cell=1 aggregate_tables=1 ...
"""
import re
import sys

text = open(sys.argv[1]).read()
stats = text[text.index("Job stats:"):]
found = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"}
expected = {k: int(v) for k, v in (arg.split("=") for arg in sys.argv[2:])}
if found != expected:
    sys.exit(f"dry run plans {found}, expected {expected}")
print(f"dry run plans exactly {expected}")
