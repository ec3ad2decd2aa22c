"""Every script in experiments/ and benchmarks/ runs as its users run it (a fresh
`python <script>` from the repository root, with its smallest flags; see
tests/_scripts_support.py), and a new script cannot be left out.

The runs are slow (compiling is most of each): the fast path only checks that every
script has its command. The scripts' own tests read the same runs.
"""

import ast

import pytest
from _scripts_support import COMMANDS, REPO, SHARED, needs_data, run, scripts_found
from plots import is_png

TABLE_HEADER = ["run", "metric", "ours", "tutorial", "note"]


def test_every_script_has_a_command_here():
    found = scripts_found()
    assert found - set(COMMANDS) == set(), (
        "a new script: give it its smallest command in tests/_scripts_support.py COMMANDS "
        "(or, if the scripts import it by name, add it to SHARED)"
    )
    assert set(COMMANDS) - found == set(), "COMMANDS names a script that is gone"
    for folder, names in SHARED.items():  # shared modules are modules, scripts are scripts
        for name in names:
            assert "__main__" not in (REPO / folder / f"{name}.py").read_text(), name
    for script in COMMANDS:
        assert 'if __name__ == "__main__":' in (REPO / script).read_text(), script


def _jnet_modules_used_and_imported(tree: ast.Module) -> tuple[set[str], set[str]]:
    """`jnet.<name>` attributes the code reads, and the jnet modules it imports itself."""
    used = {
        n.attr for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "jnet"
    }  # fmt: skip
    imported = set()
    for n in ast.walk(tree):
        names = [a.name for a in n.names] if isinstance(n, ast.Import) else []
        if isinstance(n, ast.ImportFrom) and n.module:
            names = [n.module] + [f"{n.module}.{a.name}" for a in n.names]
        imported |= {m.split(".")[1] for m in names if m.startswith("jnet.")}
    return used, imported


def test_every_jnet_module_a_script_uses_is_imported_by_it():
    """`jnet.data.mnist_flat(...)` after a bare `import jnet` fails for users (jnet does not
    import jnet.data) but passed in-process, where the tests had imported it: the bug of
    sequential_mnist.py. A module jnet/__init__.py re-exports by name (`jnet.augment`) is fine."""
    package = REPO / "jnet"
    modules = {p.stem for p in package.glob("*.py")} | {
        p.parent.name for p in package.glob("*/__init__.py")
    }  # fmt: skip
    init = ast.parse((package / "__init__.py").read_text())
    exported = {
        a.asname or a.name for n in ast.walk(init)
        if isinstance(n, ast.ImportFrom) and n.module == "jnet" for a in n.names
    }  # fmt: skip
    shared = [f"{folder}/{name}.py" for folder, names in SHARED.items() for name in names]
    for script in sorted(scripts_found()) + sorted(shared):
        used, imported = _jnet_modules_used_and_imported(ast.parse((REPO / script).read_text()))
        missing = (used & modules) - imported - exported
        assert not missing, f"{script} uses jnet.{missing.pop()} without importing it"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_script_runs_as_its_users_run_it(script, tmp_path_factory, request):
    data_dir = request.getfixturevalue("data_dir") if needs_data(script) else None
    done = run(script, tmp_path_factory, data_dir)
    command = f"python {script} {' '.join(done.argv)}"
    assert done.returncode == 0, f"{command} (exit {done.returncode}):\n{done.stderr[-4000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    print(f"{command}: {done.seconds:.1f} s")
    if script == "experiments/results.py":
        text = (done.out / "results.md").read_text()
        assert "activation functions" in text and "| run | metric |" in text
    elif script.startswith("experiments/"):  # the table, metrics.json and its PNGs
        assert any(line.split() == TABLE_HEADER for line in done.stdout.splitlines())
        saved = done.metrics()
        assert saved["config"]["quick"] and saved["rows"]
        assert saved["command"].startswith(f"python {script}")
        for name in saved["files"]:
            assert is_png(done.out / name), name
    elif script == "benchmarks/attention_memory.py":  # a table of bytes, not of times
        assert "| T | jnet MiB |" in done.stdout and "jnet / naive" in done.stdout, done.stdout
    elif script == "benchmarks/gpu_all.py":  # a driver: its steps' summary (test_gpu_all.py)
        assert (done.out / "summary.json").is_file(), done.stdout[-2000:]
    else:  # a benchmark prints its table of timings
        assert "median" in done.stdout.lower(), done.stdout[-2000:]
