"""A paired comparison of two saved demo-model pipelines on the same held-out pairs: for each column of
`examples/evaluate_demo_model.py`'s table, the mean difference (first minus second), its standard error over the
pairs, and how many pairs the first model wins.

    OMP_NUM_THREADS=2 python examples/compare_demo_models.py runs/dc4h/shipped-7000 runs/dc4h-hpfa-off/shipped-7000 \\
        --num_pairs 200 --output comparison.json

Both models generate every pair with the same generator (guidance 2.0, 25 DDIM steps, as the table's TruePose row),
so the pair-to-pair spread of the scenes cancels out of the differences. The standard error covers the choice of
pairs only, not another training seed.
"""

import argparse
import json
import math

import numpy as np
from evaluate_demo_model import (
    TRUEPOSE,
    VARIANTS,
    add_scoring_arguments,
    generate_all,
    held_out_items,
    load_for_scoring,
    pair_scores,
)

LOWER_IS_BETTER = {"garment_delta_e"}


def per_pair_scores(images: list[np.ndarray], items: list[dict]) -> dict[str, np.ndarray]:
    """The table's columns of each of `images` against its pair in `items`, `(num_pairs,)` per column."""
    scores = pair_scores(images, items)
    return {column: np.array([pair[column] for pair in scores]) for column in scores[0]}


def paired_differences(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per column of `per_pair_scores`: both means, the mean difference (first minus second), its standard error over
    the pairs, and on how many pairs the first is better."""
    columns = {}
    for column in first:
        difference = first[column] - second[column]
        columns[column] = {
            "first": float(first[column].mean()),
            "second": float(second[column].mean()),
            "difference": float(difference.mean()),
            "standard_error": float(difference.std(ddof=1) / math.sqrt(len(difference))),
            "first_wins": int(np.sum(difference < 0 if column in LOWER_IS_BETTER else difference > 0)),
        }
    return columns


def print_comparison(first: str, second: str, columns: dict[str, dict], num_pairs: int) -> None:
    print(f"| column | {first} | {second} | difference ± standard error | pairs the first wins |")
    print("|---|---|---|---|---|")
    for column, c in columns.items():
        print(
            f"| {column} | {c['first']:.4f} | {c['second']:.4f} | {c['difference']:+.4f} ± {c['standard_error']:.4f} "
            f"| {c['first_wins']} of {num_pairs} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", help="a saved pipeline folder")
    parser.add_argument("second", help="another, compared with the first on the same pairs")
    add_scoring_arguments(parser, num_pairs=200)
    parser.add_argument("--output", default="comparison.json")
    args = parser.parse_args()
    if args.num_pairs < 2:
        parser.error("--num_pairs must be at least 2 (a standard error needs two pairs)")

    items = held_out_items(args.num_pairs, tuple(args.resolution), args.backgrounds)
    scores = []
    for model in (args.first, args.second):
        images = generate_all(load_for_scoring(model), items, args.steps, VARIANTS[TRUEPOSE][1], args.batch_size)
        scores.append(per_pair_scores(images, items))
    columns = paired_differences(*scores)
    print_comparison(args.first, args.second, columns, args.num_pairs)
    with open(args.output, "w") as f:
        json.dump({"first": args.first, "second": args.second, "num_pairs": args.num_pairs, "steps": args.steps, "columns": columns}, f, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
