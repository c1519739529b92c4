"""Paper Table 2: inductive UDA on four Office-31 tasks (ResNet-50): the source model, SRDC and the oracle.

Every target domain is split 50/50 (stratified, ``split_seed``): SRDC trains on the whole labelled source and
the unlabelled target training half, the oracle on the labelled target training half. The epoch is chosen on
the target training half and its accuracy is reported on the held-out target test half (as the paper does).

    python studies/inductive_office31.py --data-root DATA          # the table: 3 variants x 4 tasks x 3 seeds
    python studies/inductive_office31.py --smoke-test              # the same 36 trials on the embedded data

Needs Office-31 under --data-root (``srdc-data`` fetches it). Every option: ``--help``; the harness is
``srdc/harness/``.
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
    variants=("source_only", "srdc", "oracle"),
    seeds=(0, 1, 2),
    config={"setting": "inductive"},
    task_config=office31_task_config(TASKS),
    smoke=OFFICE31_SMOKE,
    description="Inductive setting: epoch chosen on the target training half, accuracy of the target test half.",
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
