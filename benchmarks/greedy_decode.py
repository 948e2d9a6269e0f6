"""Greedy decoding of a GRU encoder-decoder shaped like g2p_en 2.1.0's
grapheme-to-phoneme model: one copy for benchmarks/real_gru.py (the published
checkpoint) and tests/test_gru_real.py (its offline mimic). numpy only.

An `nn.GRU` encoder runs over the input's embeddings; from <s>, an
`nn.GRUCell` decoder is fed the embedding of the previous step's argmax
until </s> or `MAX_STEPS`; a linear layer gives the logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

START, STOP, MAX_STEPS = 2, 3, 20  # g2p_en's <s>, </s> and step limit


def greedy(
    encode: Callable[[np.ndarray], Any],
    step: Callable[[np.ndarray, np.ndarray], Any],
    tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ids: list[int],
) -> dict:
    """Decodes `ids` (the input tokens, </s> included).

    Args:
        encode: `x (1, L, E) -> (output (1, L, H), h_n (1, 1, H))`.
        step: `(x (1, E), h (1, H)) -> h`.
        tables: the input and output embeddings, the linear layer's weight
            and bias, numpy arrays in the dtype to decode in.
        ids: the input token ids.

    Returns: `tokens` (without </s>), `hidden` (`output` (L, H), `h_n` (H,),
    `decoder`: h at every step), and `gap`, the smallest difference between
    the two largest logits over the steps.
    """
    emb_in, emb_out, fc_w, fc_b = tables
    output, h_n = (np.asarray(a) for a in encode(emb_in[ids][None]))
    h, token, tokens, states, gaps = h_n[-1], START, [], [], []
    for _ in range(MAX_STEPS):
        h = np.asarray(step(emb_out[[token]], h))
        logits = (h @ fc_w.T + fc_b)[0]
        second, first = np.sort(logits)[-2:]
        gaps.append(float(first - second))
        states.append(h[0])
        token = int(logits.argmax())
        if token == STOP:
            break
        tokens.append(token)
    hidden = {"output": output[0], "h_n": h_n[-1, 0], "decoder": np.stack(states)}
    return {"tokens": tokens, "hidden": hidden, "gap": min(gaps)}
