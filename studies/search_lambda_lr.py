"""Beyond the paper: an Optuna search of the penalty lambda's schedule (scale and gamma) and the learning rate.

    python studies/search_lambda_lr.py --data-root DATA                     # 40 trials, label-free objective
    python studies/search_lambda_lr.py --dataset features --promote 3       # cached features, top 3 on images
    python studies/search_lambda_lr.py --objective oracle                   # the paper's protocol (target labels)
    python studies/search_lambda_lr.py --smoke-test                         # 8 trials on the embedded data, 3 epochs
    python studies/search_lambda_lr.py --resume --storage-path DIR          # continue an interrupted search

One trial runs SRDC on A->W and D->A with seeds 0 and 1; its objective is the mean over these four runs. The
winner is re-run on seeds 100-102 and tabled with both epoch selections. Every option: ``--help``; the harness is
``srdc/harness/search.py``.
"""

import sys

from srdc.harness.declarations import (
    OFFICE31_SMOKE,
    Search,
    SmokeTest,
    Study,
    loguniform,
    office31_task_config,
    uniform,
)
from srdc.harness.main import main

TASKS = ("A->W", "D->A")

SEARCH = Search(
    study=Study(
        name="search_lambda_lr",
        dataset="office31",
        tasks=TASKS,
        seeds=(0, 1),
        grid={"lr": loguniform(1e-3, 1e-1), "lambda_scale": loguniform(0.1, 10.0),
              "lambda_gamma": uniform(1.0, 20.0)},
        task_config=office31_task_config(TASKS),
        smoke=SmokeTest(domains=OFFICE31_SMOKE.domains, epochs=3),
        description="Searched: lr, lambda_scale, lambda_gamma (paper: 0.01, 1, 10).",
    ),
    num_samples=40,
    smoke_samples=8,
    rerun_seeds=(100, 101, 102),
)

if __name__ == "__main__":
    sys.exit(main(SEARCH))
