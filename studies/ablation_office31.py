"""Paper Table 1: the ablation of SRDC's components on four Office-31 tasks (transductive, ResNet-50).

    python studies/ablation_office31.py --data-root DATA          # the table: 5 variants x 4 tasks x 3 seeds
    python studies/ablation_office31.py --smoke-test              # the same 60 trials on the embedded data, 2 epochs

Needs Office-31 under --data-root (``srdc-data`` fetches it). Every option: ``--help``; the harness is
``srdc/harness/``.
"""

import sys

from srdc.harness.declarations import AMAZON_TARGET, OFFICE31_SMOKE, Study
from srdc.harness.main import main

STUDY = Study(
    name="ablation_office31",
    paper_table="Table 1",
    dataset="office31",
    tasks=("A->W", "A->D", "D->A", "W->A"),
    variants=("source_only", "srdc_no_struct", "srdc_no_featdisc", "srdc_no_softsel", "srdc"),
    seeds=(0, 1, 2),
    # the released code's choice: mu from the target K-means centres alone when the target is amazon (mu_init)
    task_config={"D->A": AMAZON_TARGET, "W->A": AMAZON_TARGET},
    smoke=OFFICE31_SMOKE,
    description="Rows: SRDC without each component, and the source-only model.",
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
