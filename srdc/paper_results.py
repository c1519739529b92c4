"""The paper's reference numbers (Tang, Chen and Jia, CVPR 2020), Tables 1-8, for comparison in reports.

Each table's rows are copied verbatim from the paper's text (``/work/shared/paper/srdc_cvpr2020.txt``) and
parsed at import. Rows of our own variants are keyed by our variant names (``source_only``,
``srdc_no_struct``, ``srdc_no_featdisc``, ``srdc_no_softsel``, ``srdc``, ``oracle``, and the baselines we run:
``dann`` for DANN, ``cdan`` for CDAN+E); other methods keep the paper's name without the citation (``MCD``).
Tasks use the paper's domain letters with ``->`` (``A->W``, ``Ar->Cl``, ``I->P``); every row also has an ``Avg``
entry (the paper's printed average, no std), except where a value is printed as ``-`` (not reported).

All numbers are target accuracies (%) of the epoch chosen with target labels (the paper's protocol).

Table 9 is not the SRDC paper's (which has no digits experiments): it collects the digits numbers that ADDA's,
DANN's and CDAN's own papers published, so that our ``dann`` and ``cdan`` rows can be checked against them. A
:class:`Reference` names the paper of its number (:data:`PAPERS`), and the reports name it beside the number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AVG = "Avg"

# paper method name -> our variant name
_OUR_ROWS = {
    "Source Model": "source_only",
    "SRDC (w/o structural source regularization)": "srdc_no_struct",
    "SRDC (w/o feature discrimination)": "srdc_no_featdisc",
    "SRDC (w/o soft source sample selection)": "srdc_no_softsel",
    "SRDC": "srdc",
    "Oracle Model": "oracle",
    "DANN": "dann",
    "CDAN+E": "cdan",
}

# canonical dataset name -> {lower-case domain name or letter: paper letter}
_DOMAIN_LETTERS = {
    "office31": {"amazon": "A", "webcam": "W", "dslr": "D", "a": "A", "w": "W", "d": "D"},
    "imageclef": {"imagenet": "I", "pascal": "P", "caltech": "C", "i": "I", "p": "P", "c": "C"},
    "officehome": {
        "art": "Ar", "clipart": "Cl", "product": "Pr", "real_world": "Rw", "realworld": "Rw",
        "real world": "Rw", "ar": "Ar", "cl": "Cl", "pr": "Pr", "rw": "Rw",
    },
}

# (canonical dataset, setting) -> the tables to compare with, most specific first
_REFERENCE_TABLES = {
    ("office31", "transductive"): (1, 6),
    ("office31", "inductive"): (2,),
    ("imageclef", "transductive"): (7,),
    ("officehome", "transductive"): (8,),
    ("digits", "transductive"): (9,),
}
# the papers a reference number comes from, by the name the reports give each (a cell's "(SRDC paper 95.7, -0.9)"):
# name -> citation
SRDC_PAPER = "SRDC paper"
PAPERS = {
    SRDC_PAPER: "Tang, Chen and Jia, CVPR 2020",
    "ADDA paper": "Tzeng et al., CVPR 2017, Table 2",
    "CDAN paper": "Long et al., NeurIPS 2018, Table 4",
}

_OFFICE31_ABLATION = ("A->W", "A->D", "D->A", "W->A")
_OFFICE31 = ("A->W", "D->W", "W->D", "A->D", "D->A", "W->A")
_IMAGECLEF = ("I->P", "P->I", "I->C", "C->I", "C->P", "P->C")
_OFFICEHOME = (
    "Ar->Cl", "Ar->Pr", "Ar->Rw", "Cl->Ar", "Cl->Pr", "Cl->Rw",
    "Pr->Ar", "Pr->Cl", "Pr->Rw", "Rw->Ar", "Rw->Cl", "Rw->Pr",
)

_TABLE_1 = """
Source Model 77.8±0.2 82.1±0.2 64.5±0.2 66.1±0.2 72.6
SRDC (w/o structural source regularization) 87.3±0.0 92.1±0.1 73.9±0.1 75.0±0.1 82.1
SRDC (w/o feature discrimination) 94.2±0.4 94.3±0.4 74.3±0.2 75.5±0.4 84.6
SRDC (w/o soft source sample selection) 94.8±0.2 94.6±0.3 74.6±0.3 75.7±0.3 84.9
SRDC 95.7±0.2 95.8±0.2 76.7±0.3 77.1±0.1 86.3
"""

_TABLE_2 = """
Source Model 79.3 81.6 63.1 65.7 72.4
DANN [16] 80.8 82.4 66.0 64.6 73.5
MCD [48] 86.5 86.7 72.4 70.9 79.1
SRDC 91.9 91.6 75.6 75.7 83.7
Oracle Model 98.8 97.6 87.8 87.8 93.0
"""

_TABLE_3 = """
Source Model [21] 77.8±0.2 96.9±0.1 99.3±0.1 82.1±0.2 64.5±0.2 66.1±0.2 81.1
DAN [34] 81.3±0.3 97.2±0.0 99.8±0.0 83.1±0.2 66.3±0.0 66.3±0.1 82.3
DANN [16] 81.7±0.2 98.0±0.2 99.8±0.0 83.9±0.7 66.4±0.2 66.0±0.3 82.6
ADDA [53] 86.2±0.5 96.2±0.3 98.4±0.3 77.8±0.3 69.5±0.4 68.9±0.5 82.9
VADA [51] 86.5±0.5 98.2±0.4 99.7±0.2 86.7±0.4 70.1±0.4 70.5±0.4 85.4
SimNet [43] 88.6±0.5 98.2±0.2 99.7±0.2 85.3±0.3 73.4±0.8 71.8±0.6 86.2
MSTN [59] 91.3 98.9 100.0 90.4 72.7 65.6 86.5
GTA [49] 89.5±0.5 97.9±0.3 99.8±0.4 87.7±0.5 72.8±0.3 71.4±0.4 86.5
MCD [48] 88.6±0.2 98.5±0.1 100.0±0.0 92.2±0.2 69.5±0.1 69.7±0.3 86.5
SAFN+ENT [60] 90.1±0.8 98.6±0.2 99.8±0.0 90.7±0.5 73.0±0.2 70.2±0.3 87.1
DAAA [28] 86.8±0.2 99.3±0.1 100.0±0.0 88.8±0.4 74.3±0.2 73.9±0.2 87.2
iCAN [63] 92.5 98.8 100.0 90.1 72.1 69.9 87.2
CDAN+E [35] 94.1±0.1 98.6±0.1 100.0±0.0 92.9±0.2 71.0±0.3 69.3±0.3 87.7
MSTN+DSBN [5] 92.7 99.0 100.0 92.2 71.7 74.4 88.3
TADA [56] 94.3±0.3 98.7±0.1 99.8±0.2 91.6±0.3 72.9±0.2 73.0±0.3 88.4
TAT [33] 92.5±0.3 99.3±0.1 100.0±0.0 93.2±0.2 73.1±0.3 72.1±0.3 88.4
SymNets [68] 90.8±0.1 98.8±0.3 100.0±0.0 93.9±0.5 74.6±0.6 72.5±0.5 88.4
BSP+CDAN [9] 93.3±0.2 98.2±0.2 100.0±0.0 93.0±0.2 73.6±0.3 72.6±0.3 88.5
MDD [66] 94.5±0.3 98.4±0.1 100.0±0.0 93.5±0.2 74.6±0.3 72.2±0.1 88.9
CAN [27] 94.5±0.3 99.1±0.2 99.8±0.2 95.0±0.3 78.0±0.3 77.0±0.3 90.6
SRDC 95.7±0.2 99.2±0.1 100.0±0.0 95.8±0.2 76.7±0.3 77.1±0.1 90.8
"""

_TABLE_4 = """
Source Model [21] 74.8±0.3 83.9±0.1 91.5±0.3 78.0±0.2 65.5±0.3 91.2±0.3 80.7
DAN [34] 74.5±0.4 82.2±0.2 92.8±0.2 86.3±0.4 69.2±0.4 89.8±0.4 82.5
DANN [16] 75.0±0.6 86.0±0.3 96.2±0.4 87.0±0.5 74.3±0.5 91.5±0.6 85.0
JAN [37] 76.8±0.4 88.0±0.2 94.7±0.2 89.5±0.3 74.2±0.3 91.7±0.3 85.8
CDAN+E [35] 77.7±0.3 90.7±0.2 97.7±0.3 91.3±0.3 74.2±0.2 94.3±0.3 87.7
TAT [33] 78.8±0.2 92.0±0.2 97.5±0.3 92.0±0.3 78.2±0.4 94.7±0.4 88.9
SAFN+ENT [60] 79.3±0.1 93.3±0.4 96.3±0.4 91.7±0.0 77.6±0.1 95.3±0.1 88.9
SymNets [68] 80.2±0.3 93.6±0.2 97.0±0.3 93.4±0.3 78.7±0.3 96.4±0.1 89.9
SRDC 80.8±0.3 94.7±0.2 97.8±0.2 94.1±0.2 80.0±0.3 97.7±0.1 90.9
"""

_TABLE_5 = """
Source Model [21] 34.9 50.0 58.0 37.4 41.9 46.2 38.5 31.2 60.4 53.9 41.2 59.9 46.1
DAN [34] 43.6 57.0 67.9 45.8 56.5 60.4 44.0 43.6 67.7 63.1 51.5 74.3 56.3
DANN [16] 45.6 59.3 70.1 47.0 58.5 60.9 46.1 43.7 68.5 63.2 51.8 76.8 57.6
JAN [37] 45.9 61.2 68.9 50.4 59.7 61.0 45.8 43.4 70.3 63.9 52.4 76.8 58.3
SE [15] 48.8 61.8 72.8 54.1 63.2 65.1 50.6 49.2 72.3 66.1 55.9 78.7 61.5
DWT-MEC [45] 50.3 72.1 77.0 59.6 69.3 70.2 58.3 48.1 77.3 69.3 53.6 82.0 65.6
CDAN+E [35] 50.7 70.6 76.0 57.6 70.0 70.0 57.4 50.9 77.3 70.9 56.7 81.6 65.8
TAT [33] 51.6 69.5 75.4 59.4 69.5 68.6 59.5 50.5 76.8 70.9 56.6 81.6 65.8
BSP+CDAN [9] 52.0 68.6 76.1 58.0 70.3 70.2 58.6 50.2 77.6 72.2 59.3 81.9 66.3
SAFN [60] 52.0 71.7 76.3 64.2 69.9 71.9 63.7 51.4 77.1 70.9 57.1 81.5 67.3
TADA [56] 53.1 72.3 77.2 59.1 71.2 72.1 59.7 53.1 78.4 72.4 60.0 82.9 67.6
SymNets [68] 47.7 72.9 78.5 64.2 71.3 74.2 64.2 48.8 79.5 74.5 52.6 82.7 67.6
MDD [66] 54.9 73.7 77.8 60.0 71.4 71.8 61.2 53.6 78.1 72.5 60.2 82.3 68.1
SRDC 52.3 76.3 81.0 69.5 76.2 78.0 68.7 53.8 81.7 76.3 57.1 85.0 71.3
"""

_TABLE_6 = """
Source Model [21] 77.8±0.2 96.9±0.1 99.3±0.1 82.1±0.2 64.5±0.2 66.1±0.2 81.1
RTN [36] 84.5±0.2 96.8±0.1 99.4±0.1 77.5±0.3 66.2±0.2 64.8±0.3 81.6
DAN [34] 81.3±0.3 97.2±0.0 99.8±0.0 83.1±0.2 66.3±0.0 66.3±0.1 82.3
DANN [16] 81.7±0.2 98.0±0.2 99.8±0.0 83.9±0.7 66.4±0.2 66.0±0.3 82.6
ADDA [53] 86.2±0.5 96.2±0.3 98.4±0.3 77.8±0.3 69.5±0.4 68.9±0.5 82.9
JAN-A [37] 86.0±0.4 96.7±0.3 99.7±0.1 85.1±0.4 69.2±0.4 70.7±0.5 84.6
MADA [42] 90.0±0.1 97.4±0.1 99.6±0.1 87.8±0.2 70.3±0.3 66.4±0.3 85.2
VADA [51] 86.5±0.5 98.2±0.4 99.7±0.2 86.7±0.4 70.1±0.4 70.5±0.4 85.4
SimNet [43] 88.6±0.5 98.2±0.2 99.7±0.2 85.3±0.3 73.4±0.8 71.8±0.6 86.2
GTA [49] 89.5±0.5 97.9±0.3 99.8±0.4 87.7±0.5 72.8±0.3 71.4±0.4 86.5
MSTN [59] 91.3 98.9 100.0 90.4 72.7 65.6 86.5
MCD [48] 88.6±0.2 98.5±0.1 100.0±0.0 92.2±0.2 69.5±0.1 69.7±0.3 86.5
SAFN+ENT [60] 90.1±0.8 98.6±0.2 99.8±0.0 90.7±0.5 73.0±0.2 70.2±0.3 87.1
DAAA [28] 86.8±0.2 99.3±0.1 100.0±0.0 88.8±0.4 74.3±0.2 73.9±0.2 87.2
iCAN [63] 92.5 98.8 100.0 90.1 72.1 69.9 87.2
rRevGrad+CAT [13] 94.4±0.1 98.0±0.2 100.0±0.0 90.8±1.8 72.2±0.6 70.2±0.1 87.6
CDAN+E [35] 94.1±0.1 98.6±0.1 100.0±0.0 92.9±0.2 71.0±0.3 69.3±0.3 87.7
MSTN+DSBN [5] 92.7 99.0 100.0 92.2 71.7 74.4 88.3
TADA [56] 94.3±0.3 98.7±0.1 99.8±0.2 91.6±0.3 72.9±0.2 73.0±0.3 88.4
TAT [33] 92.5±0.3 99.3±0.1 100.0±0.0 93.2±0.2 73.1±0.3 72.1±0.3 88.4
SymNets [68] 90.8±0.1 98.8±0.3 100.0±0.0 93.9±0.5 74.6±0.6 72.5±0.5 88.4
BSP+CDAN [9] 93.3±0.2 98.2±0.2 100.0±0.0 93.0±0.2 73.6±0.3 72.6±0.3 88.5
MDD [66] 94.5±0.3 98.4±0.1 100.0±0.0 93.5±0.2 74.6±0.3 72.2±0.1 88.9
DADA [52] 92.3±0.1 99.2±0.1 100.0±0.0 93.9±0.2 74.4±0.1 74.2±0.1 89.0
CADA-P [30] 97.0±0.2 99.3±0.1 100.0±0.0 95.6±0.1 71.5±0.2 73.1±0.3 89.5
CAN [27] 94.5±0.3 99.1±0.2 99.8±0.2 95.0±0.3 78.0±0.3 77.0±0.3 90.6
SRDC 95.7±0.2 99.2±0.1 100.0±0.0 95.8±0.2 76.7±0.3 77.1±0.1 90.8
"""

_TABLE_7 = """
Source Model [21] 74.8±0.3 83.9±0.1 91.5±0.3 78.0±0.2 65.5±0.3 91.2±0.3 80.7
DAN [34] 74.5±0.4 82.2±0.2 92.8±0.2 86.3±0.4 69.2±0.4 89.8±0.4 82.5
RTN [36] 75.6±0.3 86.8±0.1 95.3±0.1 86.9±0.3 72.7±0.3 92.2±0.4 84.9
DANN [16] 75.0±0.6 86.0±0.3 96.2±0.4 87.0±0.5 74.3±0.5 91.5±0.6 85.0
MADA [42] 75.0±0.3 87.9±0.2 96.0±0.3 88.8±0.3 75.2±0.2 92.2±0.3 85.8
JAN [37] 76.8±0.4 88.0±0.2 94.7±0.2 89.5±0.3 74.2±0.3 91.7±0.3 85.8
rRevGrad+CAT [13] 77.2±0.2 91.0±0.3 95.5±0.3 91.3±0.3 75.3±0.6 93.6±0.5 87.3
iCAN [63] 79.5 89.7 94.7 89.9 78.5 92.0 87.4
CDAN+E [35] 77.7±0.3 90.7±0.2 97.7±0.3 91.3±0.3 74.2±0.2 94.3±0.3 87.7
CAN [27] 77.2±0.6 90.3±0.5 96.0±0.2 90.9±0.3 78.0±0.6 95.6±0.6 88.0
CADA-P [30] 78.0 90.5 96.7 92.0 77.2 95.5 88.3
TAT [33] 78.8±0.2 92.0±0.2 97.5±0.3 92.0±0.3 78.2±0.4 94.7±0.4 88.9
SAFN+ENT [60] 79.3±0.1 93.3±0.4 96.3±0.4 91.7±0.0 77.6±0.1 95.3±0.1 88.9
SymNets [68] 80.2±0.3 93.6±0.2 97.0±0.3 93.4±0.3 78.7±0.3 96.4±0.1 89.9
SRDC 80.8±0.3 94.7±0.2 97.8±0.2 94.1±0.2 80.0±0.3 97.7±0.1 90.9
"""

_TABLE_8 = """
Source Model [21] 34.9 50.0 58.0 37.4 41.9 46.2 38.5 31.2 60.4 53.9 41.2 59.9 46.1
DAN [34] 43.6 57.0 67.9 45.8 56.5 60.4 44.0 43.6 67.7 63.1 51.5 74.3 56.3
DANN [16] 45.6 59.3 70.1 47.0 58.5 60.9 46.1 43.7 68.5 63.2 51.8 76.8 57.6
JAN [37] 45.9 61.2 68.9 50.4 59.7 61.0 45.8 43.4 70.3 63.9 52.4 76.8 58.3
SE [15] 48.8 61.8 72.8 54.1 63.2 65.1 50.6 49.2 72.3 66.1 55.9 78.7 61.5
DWT-MEC [45] 50.3 72.1 77.0 59.6 69.3 70.2 58.3 48.1 77.3 69.3 53.6 82.0 65.6
CDAN+E [35] 50.7 70.6 76.0 57.6 70.0 70.0 57.4 50.9 77.3 70.9 56.7 81.6 65.8
TAT [33] 51.6 69.5 75.4 59.4 69.5 68.6 59.5 50.5 76.8 70.9 56.6 81.6 65.8
BSP+CDAN [9] 52.0 68.6 76.1 58.0 70.3 70.2 58.6 50.2 77.6 72.2 59.3 81.9 66.3
SAFN [60] 52.0 71.7 76.3 64.2 69.9 71.9 63.7 51.4 77.1 70.9 57.1 81.5 67.3
TADA [56] 53.1 72.3 77.2 59.1 71.2 72.1 59.7 53.1 78.4 72.4 60.0 82.9 67.6
SymNets [68] 47.7 72.9 78.5 64.2 71.3 74.2 64.2 48.8 79.5 74.5 52.6 82.7 67.6
MDD [66] 54.9 73.7 77.8 60.0 71.4 71.8 61.2 53.6 78.1 72.5 60.2 82.3 68.1
CAN [27] 58.5 75.3 75.1 61.7 74.5 70.1 61.3 54.6 75.9 72.4 58.3 82.4 68.3
CADA-P [30] 56.9 76.4 80.7 61.3 75.2 75.2 63.2 54.5 80.7 73.9 61.5 84.1 70.2
SRDC 52.3 76.3 81.0 69.5 76.2 78.0 68.7 53.8 81.7 76.3 57.1 85.0 71.3
"""

# Digits, with our task names ("-" = not reported). Other protocols: LeNet-style networks; ADDA used 2,000 MNIST /
# 1,800 USPS training images, CDAN the full training sets (ours: USPS's 7,291 training and MNIST's 10,000 test images
# where its training split is absent, srdc/data/digits.py). The same domains, so the numbers stand beside ours.
# - Source Model and DANN on U->M, M->U: Tzeng et al., "Adversarial Discriminative Domain Adaptation", CVPR 2017,
#   Table 2 ("Source only" 0.571±0.017 / 0.752±0.016, "Gradient reversal" 0.730±0.020 / 0.771±0.018; CDAN's
#   Table 4 repeats the DANN row).
# - CDAN+E on U->M, M->U: Long et al., "Conditional Adversarial Domain Adaptation", NeurIPS 2018, Table 4.
# Not shown: the MNIST -> MNIST-M numbers of DANN's paper (JMLR 2016, Table 2: source only .5225, DANN .7666). Our
# mnist_photo is made by MNIST-M's recipe from other photos (scikit-learn's two samples, not BSDS500): another target
# domain, so a difference from those numbers would measure the photos, not the method.
_TABLE_9 = """
Source Model 57.1±1.7 75.2±1.6 -
DANN 73.0±2.0 77.1±1.8 -
CDAN+E 98.0 95.6 -
"""
_DIGITS = ("usps->mnist", "mnist->usps")
# Table 9's numbers by the paper that published them (PAPERS): row -> task -> paper
_TABLE_9_PAPERS = {row: {"usps->mnist": paper, "mnist->usps": paper}
                   for row, paper in (("source_only", "ADDA paper"), ("dann", "ADDA paper"), ("cdan", "CDAN paper"))}
# the tables that are not the SRDC paper's: table -> the paper of each number (row -> task -> paper)
_OTHER_PAPERS = {9: _TABLE_9_PAPERS}
_MISSING = "-"

_CITATION = re.compile(r"\s*\[\d+\]$")


@dataclass(frozen=True)
class PaperTable:
    """One table of the paper: ``rows[row][task]`` is ``(mean, std)``; std is ``None`` where not printed."""

    table_id: int
    title: str
    dataset: str
    setting: str
    tasks: tuple[str, ...]
    rows: dict[str, dict[str, tuple[float, float | None]]]


def _parse_value(text: str) -> tuple[float, float | None]:
    """``"95.7±0.2"`` -> ``(95.7, 0.2)``; ``"86.3"`` -> ``(86.3, None)``."""
    mean, _, std = text.partition("±")
    return float(mean), (float(std) if std else None)


def _parse_rows(text: str, tasks: tuple[str, ...]) -> dict[str, dict[str, tuple[float, float | None]]]:
    """Rows ``NAME [cite] v1 ... vN avg`` -> ``{row key: {task: (mean, std), "Avg": (avg, None)}}``; a value
    ``-`` (not reported) has no entry."""
    rows = {}
    columns = (*tasks, AVG)
    for line in text.strip().splitlines():
        words = line.split()
        name = _CITATION.sub("", " ".join(words[: -len(columns)]))
        rows[_OUR_ROWS.get(name, name)] = {column: _parse_value(word) for column, word in
                                           zip(columns, words[-len(columns):], strict=True) if word != _MISSING}
    return rows


def _table(
    table_id: int, title: str, dataset: str, setting: str, tasks: tuple[str, ...], text: str
) -> PaperTable:
    return PaperTable(table_id, title, dataset, setting, tasks, _parse_rows(text, tasks))


TABLES: dict[int, PaperTable] = {
    table.table_id: table
    for table in (
        _table(1, "Ablation studies, Office-31", "office31", "transductive", _OFFICE31_ABLATION, _TABLE_1),
        _table(2, "Inductive UDA setting, Office-31", "office31", "inductive", _OFFICE31_ABLATION, _TABLE_2),
        _table(3, "Office-31", "office31", "transductive", _OFFICE31, _TABLE_3),
        _table(4, "ImageCLEF-DA", "imageclef", "transductive", _IMAGECLEF, _TABLE_4),
        _table(5, "Office-Home", "officehome", "transductive", _OFFICEHOME, _TABLE_5),
        _table(6, "Office-31 (all methods)", "office31", "transductive", _OFFICE31, _TABLE_6),
        _table(7, "ImageCLEF-DA (all methods)", "imageclef", "transductive", _IMAGECLEF, _TABLE_7),
        _table(8, "Office-Home (all methods)", "officehome", "transductive", _OFFICEHOME, _TABLE_8),
        _table(9, "Digits, published by ADDA's and CDAN's papers", "digits", "transductive", _DIGITS, _TABLE_9),
    )
}


def paper_cell(table_id: int, row: str, task: str) -> tuple[float, float | None] | None:
    """``(mean, std)`` of ``row`` on ``task`` (or ``"Avg"``) in Table ``table_id``; ``None``: not reported."""
    return TABLES[table_id].rows.get(row, {}).get(task)


def paper_value(table_id: int, row: str, task: str) -> float | None:
    """The paper's mean accuracy (%) of ``row`` on ``task`` (or ``"Avg"``) in Table ``table_id``, or None."""
    cell = paper_cell(table_id, row, task)
    return None if cell is None else cell[0]


def canonical_dataset(dataset: str) -> str:
    """``"Office-31"``, ``"office_31"`` -> ``"office31"``; ``"ImageCLEF-DA"`` -> ``"imageclef"``."""
    name = re.sub(r"[-_ ]", "", dataset.lower())
    return "imageclef" if name.startswith("imageclef") else name


def paper_task(dataset: str, task: str) -> str:
    """Our task name in the paper's letters (``amazon->webcam`` -> ``A->W``); unchanged if not a paper's."""
    letters = _DOMAIN_LETTERS.get(canonical_dataset(dataset))
    source, arrow, target = task.partition("->")
    if letters is None or not arrow:
        return task
    if source.lower() not in letters or target.lower() not in letters:
        return task
    return f"{letters[source.lower()]}->{letters[target.lower()]}"


def reference_tables(dataset: str, setting: str) -> tuple[int, ...]:
    """The paper tables that report ``dataset`` in ``setting``, most specific (ablations) first."""
    return _REFERENCE_TABLES.get((canonical_dataset(dataset), setting), ())


@dataclass(frozen=True)
class Reference:
    """A reference number: the accuracy (%) that ``paper`` (a name of :data:`PAPERS`) published."""

    value: float
    paper: str


def _reference(table_id: int, row: str, task: str) -> Reference | None:
    """``row``'s number on ``task`` in Table ``table_id`` and the paper that published it, or None."""
    value = paper_value(table_id, row, task)
    if value is None:
        return None
    others = _OTHER_PAPERS.get(table_id)
    return Reference(value, SRDC_PAPER if others is None else others[row][task])


def paper_reference(dataset: str, setting: str, row: str, task: str) -> Reference | None:
    """The reference number for ``row`` (a variant) on ``task`` (paper letters), from the first table with it."""
    for table_id in reference_tables(dataset, setting):
        found = _reference(table_id, row, task)
        if found is not None:
            return found
    return None


def paper_average(dataset: str, setting: str, row: str, tasks: list[str]) -> Reference | None:
    """The printed Avg for ``row``, only from a table whose task set is exactly ``tasks``."""
    for table_id in reference_tables(dataset, setting):
        if set(TABLES[table_id].tasks) == set(tasks):
            found = _reference(table_id, row, AVG)
            if found is not None:
                return found
    return None


def reference_note(dataset: str, setting: str, papers: set[str]) -> str:
    """Each of ``papers`` (names of :data:`PAPERS`) cited for a report: the SRDC paper with its tables of
    ``dataset`` in ``setting`` and its protocol, another paper with its own."""
    srdc_tables = "/".join(str(t) for t in reference_tables(dataset, setting) if t not in _OTHER_PAPERS)
    notes = [f"{paper}: {PAPERS[paper]}, Table {srdc_tables}, epoch chosen with target labels" if paper == SRDC_PAPER
             else f"{paper}: {PAPERS[paper]}, LeNet, its own protocol" for paper in PAPERS if paper in papers]
    return "; ".join(notes)


def reference_task_order(dataset: str) -> tuple[str, ...]:
    """The paper's task order for ``dataset`` (its widest table's; empty if not in the paper)."""
    tables = [table for table in TABLES.values() if table.dataset == canonical_dataset(dataset)]
    return max((table.tasks for table in tables), key=len, default=())
