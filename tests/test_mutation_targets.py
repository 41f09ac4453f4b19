"""benchmarks/mutation.sh's targets name what exists: every target's file, its test paths, and for each mutant-name
glob at least one function or method of that file (mutmut 3 names mutants `<module>.x_<function>__mutmut_<n>` and
`<module>.xǁ<Class>ǁ<method>__mutmut_<n>`), so a split or a renamed test cannot leave a target running nothing."""

import ast
import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = (ROOT / "benchmarks" / "mutation.sh").read_text(encoding="utf-8")


def table(name: str) -> dict[str, str]:
    """`NAME[target]=value` or `NAME[target]="value over lines"` assignments of the script."""
    pattern = rf'^{name}\[(\w+)\]=(?:"([^"]*)"|(\S+))'
    return {m[1]: m[2] if m[2] is not None else m[3] for m in re.finditer(pattern, SCRIPT, flags=re.MULTILINE)}


FILE, SELECT, TESTS = table("FILE"), table("SELECT"), table("TESTS")
ALL = re.search(r"^ALL=\(([^)]*)\)", SCRIPT, flags=re.MULTILINE)[1].split()


def mutant_prefixes(path: Path, module: str) -> list[str]:
    """What mutmut 3 names the mutants of each top-level function and method of `path`."""
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.append(f"{module}.x_{node.name}__mutmut_1")
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.append(f"{module}.xǁ{node.name}ǁ{item.name}__mutmut_1")
    return names


def test_every_target_is_run_and_fully_described():
    assert sorted(ALL) == sorted(FILE) and len(set(ALL)) == len(ALL)
    assert set(SELECT) <= set(FILE) and set(TESTS) == set(FILE)


@pytest.mark.parametrize("target", sorted(FILE))
def test_target_file_tests_and_globs_exist(target):
    path = ROOT / FILE[target]
    assert path.is_file(), f"{target}: no file {FILE[target]}"
    for test_path in TESTS[target].split():
        assert (ROOT / test_path).exists(), f"{target}: no test path {test_path}"
    module = ".".join(Path(FILE[target]).relative_to("src").with_suffix("").parts)
    prefixes = mutant_prefixes(path, module)
    for glob in SELECT.get(target, "").split():
        assert glob.startswith(f"{module}.x"), f"{target}: {glob} is not a mutant of {module}"
        assert fnmatch.filter(prefixes, glob), f"{target}: {glob} names no function or method of {FILE[target]}"
