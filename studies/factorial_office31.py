"""Paper Table 1, extended: the full 2^3 factorial of SRDC's three components on its four Office-31 tasks.

Each of structural source regularisation (S), feature discrimination (F) and soft source sample selection (W)
is switched on and off, crossed with the others: 8 cells x 4 tasks x 3 seeds. Under the results table (a row
per cell; the cells that are rows of Table 1 carry the paper's numbers) come the main effects and interactions,
mean ± standard error across the 12 task x seed blocks (``srdc.factorial``).

Without S the trainer pre-trains on the source for ``source_pretrain_epochs`` and then trains eq. (6) alone,
so W has no effect there: the cells S- F± W+ and S- F± W- are identical. Hence the main effect of W is half
the effect W has with S on and equals the S x W interaction (and F x W equals S x F x W). With the paper's
feature kernel F's gradients are small (docs/fidelity_notes.md, 15b; in the smoke ablation srdc and srdc_no_featdisc
differ by 0.2 points at most):
``--set feature_kernel=student_t`` runs the whole factorial with DEC's kernel instead.

    python studies/factorial_office31.py --data-root DATA          # the table: 8 cells x 4 tasks x 3 seeds
    python studies/factorial_office31.py --smoke-test              # the same 96 trials on the embedded data

Needs Office-31 under --data-root (``srdc-data`` fetches it). Every option: ``--help``; the harness is
``srdc/harness/``.
"""

import sys

from srdc.factorial import factorial_tables
from srdc.harness.declarations import OFFICE31_SMOKE, Study, office31_task_config
from srdc.harness.main import main

TASKS = ("A->W", "A->D", "D->A", "W->A")

STUDY = Study(
    name="factorial_office31",
    paper_table="Table 1",
    dataset="office31",
    tasks=TASKS,
    variants=("srdc",),
    seeds=(0, 1, 2),
    grid={"structural_source_reg": [True, False], "feature_discrimination": [True, False],
          "soft_source_selection": [True, False]},
    task_config=office31_task_config(TASKS),
    tables=factorial_tables,
    smoke=OFFICE31_SMOKE,
    description="Rows: the 8 cells of the three component switches; effects and interactions under the table.",
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
