import pytest


@pytest.fixture(autouse=True)
def _lenient_grading(monkeypatch, tmp_path):
    """Unit tests inspect failing checks, so they run without strict mode and with their own progress file."""
    monkeypatch.setenv("MI_COURSE_STRICT", "0")
    monkeypatch.setenv("MI_COURSE_PROGRESS", str(tmp_path / "progress.json"))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread per test, restored afterwards: on a busy 2-core machine torch's default
    threading can be 20x slower, and training is specified (and deterministic) for one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
