"""AdaBN (Li et al., "Revisiting Batch Normalization For Practical Domain Adaptation", ICLR workshop 2017; Pattern
Recognition 2018): the source-only model, each domain normalised with its own BatchNorm statistics when it is
evaluated. A baseline every large-gap comparison needs: across digits -> photos it beats most adaptation methods
(docs/fidelity_notes.md, item 27)."""

from __future__ import annotations

from srdc.methods.source_only import SourceOnly


class AdaBN(SourceOnly):
    """Trains as :class:`SourceOnly`; its preparation pass (evaluation, K-means, the diagnostics) normalises each domain
    with that domain's statistics, gathered by one pass over it (the trainer's ``prep_batchnorm domain``)."""

    preparation_batchnorm = "domain"
