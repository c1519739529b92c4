"""Paper Table 5 (all methods: Table 8): SRDC, the source model and AdaBN on the twelve Office-Home tasks
(transductive, ResNet-50).

    python studies/benchmark_officehome.py --data-root DATA        # the table: 3 variants x 12 tasks x 3 seeds
    python studies/benchmark_officehome.py --smoke-test            # the same 108 trials on the embedded data

Needs Office-Home under --data-root (``srdc-data`` fetches it). Every option: ``--help``; the harness is
``srdc/harness/``.
"""

import sys

from srdc.harness.declarations import SmokeTest, Study
from srdc.harness.main import main

STUDY = Study(
    name="benchmark_officehome",
    paper_table="Table 5/8",
    dataset="officehome",
    tasks=("Ar->Cl", "Ar->Pr", "Ar->Rw", "Cl->Ar", "Cl->Pr", "Cl->Rw",
           "Pr->Ar", "Pr->Cl", "Pr->Rw", "Rw->Ar", "Rw->Cl", "Rw->Pr"),
    variants=("source_only", "srdc", "adabn"),
    seeds=(0, 1, 2),
    smoke=SmokeTest(domains={"Ar": "digits", "Cl": "digits_color", "Pr": "digits_photo", "Rw": "digits_inverted"}),
    description="Rows: the source-only model, SRDC and AdaBN (the source model, each domain normalised with its "
                "own BatchNorm statistics).",
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
