"""Paper Table 3 (all methods: Table 6): SRDC, the source model and AdaBN on all six Office-31 tasks (transductive,
ResNet-50).

    python studies/benchmark_office31.py --data-root DATA          # the table: 3 variants x 6 tasks x 3 seeds
    python studies/benchmark_office31.py --smoke-test              # the same 54 trials on the embedded data

Needs Office-31 under --data-root (``srdc-data`` fetches it). Every option: ``--help``; the harness is
``srdc/harness/``.
"""

import sys

from srdc.harness.declarations import OFFICE31_SMOKE, Study, office31_task_config
from srdc.harness.main import main

TASKS = ("A->W", "D->W", "W->D", "A->D", "D->A", "W->A")

STUDY = Study(
    name="benchmark_office31",
    paper_table="Table 3/6",
    dataset="office31",
    tasks=TASKS,
    variants=("source_only", "srdc", "adabn"),
    seeds=(0, 1, 2),
    task_config=office31_task_config(TASKS),
    smoke=OFFICE31_SMOKE,
    description="Rows: the source-only model, SRDC and AdaBN (the source model, each domain normalised with its "
                "own BatchNorm statistics).",
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
