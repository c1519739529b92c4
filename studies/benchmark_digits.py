"""USPS <-> MNIST with LeNet: SRDC's ablation rows and the source model, for real on a CPU (no paper table).

The paper reports no digits results, so the table has no paper numbers. The whole study, 5 variants x 2 tasks
x 3 seeds of EPOCHS epochs each, fits in an hour on two CPU cores, one trial per core: an epoch costs about
9 s of one core for the source model and 17 s for SRDC (USPS -> MNIST, measured), about 25 minutes in all
(SRDC is within a point of its 15-epoch accuracy by epoch 6 on USPS -> MNIST).
MNIST is its 10,000-image test split where the training split is absent (as in ../shared/data).

    python studies/benchmark_digits.py                             # the table; --data-root: $SRDC_DATA_ROOT,
                                                                   # else ../shared/data beside the repository
    python studies/benchmark_digits.py --smoke-test                # the same 30 trials on the embedded data

Every option: ``--help``; the harness is ``srdc/harness/``.
"""

import sys

from srdc.harness.declarations import SmokeTest, Study, shared_data_root
from srdc.harness.main import main

EPOCHS = 6

STUDY = Study(
    name="benchmark_digits",
    dataset="digits",
    tasks=("usps->mnist", "mnist->usps"),
    variants=("source_only", "srdc_no_struct", "srdc_no_featdisc", "srdc_no_softsel", "srdc"),
    seeds=(0, 1, 2),
    config={"epochs": EPOCHS},
    smoke=SmokeTest(domains={"usps": "digits", "mnist": "digits_inverted"}),
    description="Rows: SRDC without each component, and the source-only model. No paper table: the paper has no "
                "digits experiments.",
    data_root=shared_data_root(),
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
