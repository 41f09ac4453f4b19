"""Lets mutmut 3 mutate decorated functions: re-applies their decorators after the definition (used by mutation.sh).

mutmut 3 skips every function with a decorator other than a lone ``@staticmethod``/``@classmethod``, which would
leave ``TruePosePipeline.__call__`` (``@torch.no_grad()``), properties, context managers and ``@register_to_config``
constructors unmutated. This rewrites one file of a mutation snapshot (never the working tree) so that

    @torch.no_grad()                        def __call__(self, ...):
    def __call__(self, ...):        ->          ...
        ...                                 # right after the class:
                                            TruePosePipeline.__call__ = (torch.no_grad())(TruePosePipeline.__dict__["__call__"])

The decorators are applied to mutmut's trampoline, which dispatches to the original or a mutant at call time, so the
unmutated module behaves exactly as before. Only module-level functions and methods of module-level classes are
rewritten (nested definitions are left as they are).

    python benchmarks/mutation_undecorate.py src/truepose/pipeline.py
"""

from __future__ import annotations

import ast
import sys

MUTMUT_HANDLES = ({"staticmethod"}, {"classmethod"})


def undecorate(source: str) -> tuple[str, list[str]]:
    """Returns the rewritten source and the statements added to it (one per function)."""
    lines = source.splitlines(keepends=True)
    removed: set[int] = set()  # 0-based numbers of decorator lines
    added: dict[int, list[str]] = {}  # 0-based line number -> statements inserted after it

    def visit(node: ast.FunctionDef | ast.AsyncFunctionDef, owner: ast.ClassDef | None) -> None:
        decorators = node.decorator_list
        if not decorators or (len(decorators) == 1 and {ast.unparse(decorators[0])} in MUTMUT_HANDLES):
            return
        for decorator in decorators:
            removed.update(range(decorator.lineno - 1, decorator.end_lineno))
        target = node.name if owner is None else f"{owner.name}.{node.name}"
        wrapped = node.name if owner is None else f'{owner.name}.__dict__["{node.name}"]'
        for decorator in reversed(decorators):
            wrapped = f"({ast.unparse(decorator)})({wrapped})"
        # right after the function (or its class): code that runs at import time sees it decorated, as before
        added.setdefault((owner or node).end_lineno - 1, []).append(f"{target} = {wrapped}\n")

    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            visit(node, None)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit(item, node)
    rewritten = []
    for number, line in enumerate(lines):
        if number not in removed:
            rewritten.append(line)
        if number in added:
            rewritten += ["# decorators moved here by benchmarks/mutation_undecorate.py\n", *added[number]]
    return "".join(rewritten), [statement.strip() for group in added.values() for statement in group]


if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path) as file:
            rewritten, statements = undecorate(file.read())
        with open(path, "w") as file:
            file.write(rewritten)
        print(f"{path}: {len(statements)} decorated functions made mutable")
