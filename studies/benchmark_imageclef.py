"""Paper Table 4 (all methods: Table 7): SRDC, the source model and AdaBN on the six ImageCLEF-DA tasks (transductive,
ResNet-50).

    python studies/benchmark_imageclef.py --data-root DATA         # the table: 3 variants x 6 tasks x 3 seeds
    python studies/benchmark_imageclef.py --smoke-test             # the same 54 trials on the embedded data

Needs ImageCLEF-DA under --data-root (``srdc-data`` fetches it). Every option: ``--help``; the harness is
``srdc/harness/``.
"""

import sys

from srdc.harness.declarations import SmokeTest, Study
from srdc.harness.main import main

STUDY = Study(
    name="benchmark_imageclef",
    paper_table="Table 4/7",
    dataset="imageclef",
    tasks=("I->P", "P->I", "I->C", "C->I", "C->P", "P->C"),
    variants=("source_only", "srdc", "adabn"),
    seeds=(0, 1, 2),
    smoke=SmokeTest(domains={"I": "digits", "P": "digits_photo", "C": "digits_color"}),
    description="Rows: the source-only model, SRDC and AdaBN (the source model, each domain normalised with its "
                "own BatchNorm statistics).",
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
