"""The learning trend of a demo-model lineage: the TruePose row (guidance 2.0) of several saved pipelines of one run
(e.g. one every 1,000 steps) on the first held-out pairs, with the VAE ceiling of the first.

    OMP_NUM_THREADS=2 python examples/demo_model_trend.py --num_pairs 40 --output trend.json \\
        runs/dc4h/shipped-1000 runs/dc4h/shipped-2000 runs/dc4h/shipped-3000

Scores as `examples/evaluate_demo_model.py` (same pairs, 25 DDIM steps, one fixed generator per pair, same columns),
so a trend row compares with the first rows of its table.
"""

import argparse
import json
import time

from evaluate_demo_model import (
    TRUEPOSE,
    VARIANTS,
    add_scoring_arguments,
    generate_all,
    held_out_items,
    load_for_scoring,
    mean_scores,
    print_table,
    reconstruct,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="saved pipelines of one lineage, in training order")
    add_scoring_arguments(parser, num_pairs=40)
    parser.add_argument("--output", default="trend.json")
    args = parser.parse_args()
    size = tuple(args.resolution)

    items = held_out_items(args.num_pairs, size, args.backgrounds)
    rows = {}
    for index, model in enumerate(args.models):
        start = time.time()
        pipe = load_for_scoring(model)
        if index == 0:
            targets = [item["target_image"] for item in items]
            rows["VAE reconstruction of the target (ceiling)"] = mean_scores(reconstruct(pipe, targets, size), items)
        generated = generate_all(pipe, items, args.steps, VARIANTS[TRUEPOSE][1], args.batch_size)
        rows[model] = {**mean_scores(generated, items), "seconds": time.time() - start}
        print(f"scored {model} in {rows[model]['seconds']:.0f}s", flush=True)
    with open(args.output, "w") as f:
        json.dump({"num_pairs": args.num_pairs, "steps": args.steps, "resolution": size, "rows": rows}, f, indent=2)
    print_table(rows)


if __name__ == "__main__":
    main()
