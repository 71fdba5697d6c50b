"""The one-source build: solutions/ -> chapters/, and the sync check."""

import json
from pathlib import Path

import nbformat
import pytest

from mi_course import notebooks
from mi_course.notebooks import BuildError, build_notebook, strip_solutions

ROOT = Path(__file__).resolve().parent.parent

FUNCTION_CELL = '''def f(x):
    """Doc."""
    # BEGIN SOLUTION
    y = x * 2
    return y
    # END SOLUTION

f = check("ch01.double", f).use'''


def test_indented_region_becomes_a_named_stub():
    out = strip_solutions(FUNCTION_CELL)
    assert 'raise NotImplementedError("Exercise ch01.double: write your code here")' in out
    assert "y = x * 2" not in out and "BEGIN SOLUTION" not in out
    assert out.splitlines()[1] == '    """Doc."""'
    compile(out, "cell", "exec")


def test_marker_text_and_function_name_name_the_exercise():
    assert "ch03.x" in strip_solutions("def g():\n    # BEGIN SOLUTION ch03.x\n    pass\n    # END SOLUTION")
    assert "Exercise g:" in strip_solutions("def g():\n    # BEGIN SOLUTION\n    pass\n    # END SOLUTION")


def test_top_level_region_becomes_ellipsis_answers():
    out = strip_solutions("# BEGIN SOLUTION\nr2_count = 2\nbound: float = 3.5\n# END SOLUTION\nr2_count = check('ch01.r2', r2_count).use")
    assert "r2_count = ...  # your answer (ch01.r2)" in out
    assert "bound = ...  # your answer (ch01.r2)" in out
    assert "= 2" not in out


@pytest.mark.parametrize("bad", ["def f():\n    # BEGIN SOLUTION\n    pass",
                                 "x = 1\n# END SOLUTION",
                                 "# BEGIN SOLUTION\nprint(1)\n# END SOLUTION"])
def test_malformed_regions_are_build_errors(bad):
    with pytest.raises(BuildError):
        strip_solutions(bad)


def _notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell(FUNCTION_CELL)
    code.outputs = [nbformat.v4.new_output("stream", text="hi")]
    code.execution_count = 3
    secret = nbformat.v4.new_code_cell("print('answer')")
    secret.metadata["tags"] = ["solution-only"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), code, secret]
    return nb


def test_build_drops_solution_only_cells_and_clears_outputs():
    source = _notebook()
    chapter = build_notebook(source)
    assert [c.cell_type for c in chapter.cells] == ["markdown", "code"]
    assert chapter.cells[1].outputs == [] and chapter.cells[1].execution_count is None
    assert source.cells[1].outputs, "the build must not modify the solution notebook"


def test_sync_check_names_stale_and_orphan_notebooks(tmp_path):
    src, dst = tmp_path / "solutions", tmp_path / "chapters"
    src.mkdir()
    nbformat.write(_notebook(), src / "01_demo.ipynb")
    assert notebooks.main(["--check", "--src", str(src), "--dst", str(dst)]) == 1
    assert notebooks.main(["--build", "--src", str(src), "--dst", str(dst)]) == 0
    assert notebooks.main(["--check", "--src", str(src), "--dst", str(dst)]) == 0
    text = (dst / "01_demo.ipynb").read_text()
    (dst / "01_demo.ipynb").write_text(text.replace("Title", "Edited by hand"))
    (dst / "99_orphan.ipynb").write_text(text)
    problems = notebooks.out_of_date(src, dst)
    assert problems == ["01_demo.ipynb: differs from the build of " + str(src / "01_demo.ipynb"),
                        "99_orphan.ipynb: has no source in " + str(src)]


def test_repository_chapters_are_in_sync():
    problems = notebooks.out_of_date(ROOT / "solutions", ROOT / "chapters")
    assert problems == [], "\n".join(problems)


def test_every_chapter_has_a_solution_notebook():
    assert sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    for path in (ROOT / "solutions").glob("*.ipynb"):
        json.loads(path.read_text())


def test_build_writes_complete_kernel_metadata(tmp_path):
    src, dst = tmp_path / "solutions", tmp_path / "chapters"
    src.mkdir()
    bare = _notebook()
    bare.metadata = {"kernelspec": {"name": "python3"}, "language_info": {"name": "python"}}
    nbformat.write(bare, src / "01_demo.ipynb")
    assert notebooks.out_of_date(src, dst)[-1] == "01_demo.ipynb: incomplete kernel metadata in " + str(src)
    notebooks.build(src, dst)
    assert notebooks.out_of_date(src, dst) == []
    for path in (src / "01_demo.ipynb", dst / "01_demo.ipynb"):
        metadata = nbformat.read(path, as_version=4).metadata
        assert metadata.language_info.file_extension == ".py"
        assert metadata.language_info.mimetype == "text/x-python"
        assert metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("folder", ["solutions", "chapters"])
def test_repository_notebooks_export_as_python_scripts(folder):
    """What `jupyter nbconvert --to script` does: the exporter picks the extension from language_info."""
    from nbconvert import ScriptExporter

    paths = sorted((ROOT / folder).glob("*.ipynb"))
    assert paths
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.language_info == notebooks.KERNEL_METADATA["language_info"], path.name
        body, resources = ScriptExporter().from_notebook_node(nb)
        assert resources["output_extension"] == ".py", path.name
        compile(body, path.name, "exec")
