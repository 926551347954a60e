"""How much does codebook-embedding alignment ask beyond next-token cross-entropy, for one tokenizer?

Prints, on class-balanced held-out tokens: the cosine a constant per position would reach against
the target code vectors e(x_i) (the easy part of the alignment loss), the decode head's cosine, and
the cosine of the code direction the generator's own softmax already implies (sum_k p_k e_k). When
the last two are equal, the decode head knows nothing the logits did not, and its loss is redundant.

    python benchmarks/alignment_information.py runs/study/fashion_mnist/runs/rear-0/checkpoint \
        --tokenizer results/fashion_mnist/tokenizer --heldout results/fashion_mnist/store-test

`rear study` records the same measurement for every final run (units `<arm>/<k>/alignment`).
"""
from __future__ import annotations

import argparse

import numpy as np

from rear.checkpoint import load_generator
from rear.data.store import TokenStore
from rear.evaluation import diagnose
from rear.tokenizer.load import read_codebook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a generator (with or without the decode alignment head)")
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--heldout", required=True, help="a token store of held-out images")
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    store = TokenStore(args.heldout)
    items = diagnose.balanced_items(np.asarray(store.labels), args.count, 0)
    tokens, labels = store.batch(items, np.zeros_like(items))  # [B, N], [B]
    codebook = read_codebook(args.tokenizer)[0]  # [K, Z]
    result = diagnose.alignment_information(load_generator(args.checkpoint).eval(), tokens, labels, codebook)
    head = "-" if result["decode_head_cosine"] is None else f"{result['decode_head_cosine']:.3f}"
    print(f"code dimension Z = {codebook.shape[1]}, {codebook.shape[0]} codes, {len(items)} held-out images")
    print(f"cosine to e(x_i) of a constant per position:         {result['constant_cosine']:.3f}")
    print(f"cosine to e(x_i) of the decode alignment head:       {head}")
    print(f"cosine to e(x_i) of the direction the logits imply:  {result['implied_cosine']:.3f}")


if __name__ == "__main__":
    main()
