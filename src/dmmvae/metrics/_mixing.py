"""Modality mixing (PROTOCOL "Integration quality", second view; GLUE and SCMMIB's view).

The test cells' single-modality embeddings are stacked (``N`` rows per modality), the batch of
a row is its modality of origin and its label the cell type; scib-metrics then scores the
batch-correction metrics on that stack (do the modalities mix?) and the bio-conservation
metrics (do cell types stay apart?), with the ``0.6 bio + 0.4 batch`` aggregate. Two
modalities embedded in separate regions of the latent space score low batch correction however
well each separates cell types: the view that matters in the diagonal and mosaic scenarios.
"""

from __future__ import annotations

import numpy as np

from ._scib import scib_scores


def modality_mixing(
    embeddings: dict[str, np.ndarray], labels: np.ndarray, kbet: bool = True
) -> dict[str, object]:
    """scib-metrics on the stacked single-modality embeddings (batch = modality of origin).

    ``embeddings``: modality -> (N, d) embedding of the same N cells; ``labels``: (N,);
    ``kbet=False`` leaves kBET per label out of the batch metrics (see ``evaluation.mixing_kbet``).
    Returns :func:`scib_scores`'s dict (``scores``, ``errors``, ``version``).
    """
    mods = list(embeddings)
    if len(mods) < 2:
        raise ValueError(f"mixing: needs at least two modalities' embeddings, got {mods}")
    shapes = {np.asarray(embeddings[m]).shape for m in mods}
    if len(shapes) != 1:
        raise ValueError(f"mixing: embeddings of different shapes {sorted(shapes)}")
    z = np.vstack([np.asarray(embeddings[m], dtype=np.float32) for m in mods])
    n = len(embeddings[mods[0]])
    batch = np.repeat(np.asarray(mods), n)
    return scib_scores(z, np.tile(np.asarray(labels), len(mods)), batch,
                       skip=() if kbet else ("kbet_per_label",))
