"""Paper Table 5 (all methods: Table 8): SRDC and the source model on the twelve Office-Home tasks
(transductive, ResNet-50).

    python studies/benchmark_officehome.py --data-root DATA        # the table: 2 variants x 12 tasks x 3 seeds
    python studies/benchmark_officehome.py --smoke-test            # the same 72 trials on the embedded data

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
    variants=("source_only", "srdc"),
    seeds=(0, 1, 2),
    smoke=SmokeTest(domains={"Ar": "digits", "Cl": "digits_color", "Pr": "digits_photo", "Rw": "digits_inverted"}),
    description="Rows: the source-only model and SRDC.",
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
