"""Paper Table 2: inductive UDA on four Office-31 tasks (ResNet-50): the source model, AdaBN, SRDC and the oracle.

Every target domain is split in two halves, the authors' released lists by default (``--set
inductive_split=seeded``: a stratified 50/50 split by ``split_seed``): SRDC trains on the whole labelled source and
the unlabelled target training half, the oracle on the labelled target training half. The epoch is chosen on
the target training half and its accuracy is reported on the held-out target test half (as the paper does); the
study also prints the released code's other two accuracies (the best of each half).

    python studies/inductive_office31.py --data-root DATA          # the table: 4 variants x 4 tasks x 3 seeds
    python studies/inductive_office31.py --smoke-test              # the same 48 trials on the embedded data

Needs Office-31 and the released half lists under --data-root (``srdc-data download office31`` fetches both).
Every option: ``--help``; the harness is ``srdc/harness/``.
"""

import sys

from srdc.harness.declarations import OFFICE31_SMOKE, Study, office31_task_config
from srdc.harness.main import main

TASKS = ("A->W", "A->D", "D->A", "W->A")

STUDY = Study(
    name="inductive_office31",
    paper_table="Table 2",
    dataset="office31",
    tasks=TASKS,
    variants=("source_only", "srdc", "oracle", "adabn"),
    seeds=(0, 1, 2),
    config={"setting": "inductive"},
    task_config=office31_task_config(TASKS),
    smoke=OFFICE31_SMOKE,
    description="Inductive setting: epoch chosen on the target training half, accuracy of the target test half.",
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
