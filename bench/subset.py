"""Split a CoNLL training file into a labeled subset and the rest as unlabeled sentences.

    python bench/subset.py ../shared/data/conll2003/train.txt --labeled 2000 --seed 1 --out runs/data/2000

writes ``train.conll`` (the labeled subset, ``token<TAB>TAG``) and ``unlabeled.conll`` (the other
sentences, one token per line, read with ``--unlabeled-format conll``), keeping the corpus's own
tokenization. Both are tab-separated, so tokens that hold spaces (BTC has some) stay whole; the
unlabeled file's second column (``_``, never read) keeps an empty token on a line of its own.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from tagdistill.data import read_file


def write_subset(train: Path, labeled: int, seed: int, out: Path) -> tuple[int, int]:
    """Write ``out/train.conll`` and ``out/unlabeled.conll``; return their sentence counts."""
    sentences = read_file(train, "conll")
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    keep = set(order[:labeled])
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.conll", "w") as lab, open(out / "unlabeled.conll", "w") as unl:
        for i, s in enumerate(sentences):
            if i in keep:
                lab.writelines(f"{tok}\t{tag}\n" for tok, tag in zip(s.tokens, s.tags, strict=True))
                lab.write("\n")
            else:
                unl.writelines(f"{tok}\t_\n" for tok in s.tokens)
                unl.write("\n")
    return len(keep), len(sentences) - len(keep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("train", type=Path)
    p.add_argument("--labeled", type=int, required=True, help="sentences kept with their tags")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    n_lab, n_unl = write_subset(args.train, args.labeled, args.seed, args.out)
    print(f"{n_lab} labeled, {n_unl} unlabeled sentences in {args.out}")


if __name__ == "__main__":
    main()
