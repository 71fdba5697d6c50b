import pytest
import torch

from mi_course import runtime


def test_cpu_without_cuda(monkeypatch):
    monkeypatch.delenv("MI_COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.get_device() == torch.device("cpu")


def test_cuda_when_present(monkeypatch):
    monkeypatch.delenv("MI_COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.get_device() == torch.device("cuda")


def test_mps_only_on_request(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.delenv("MI_COURSE_DEVICE", raising=False)
    assert runtime.get_device().type == "cpu"
    monkeypatch.setenv("MI_COURSE_DEVICE", "mps")
    assert runtime.get_device().type == "mps"


def test_bad_device_request_is_explained(monkeypatch):
    monkeypatch.setenv("MI_COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="use cpu, cuda or mps"):
        runtime.get_device()
    monkeypatch.setenv("MI_COURSE_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        runtime.get_device()


def test_setup_seeds_sets_threads_and_quiets_bars(monkeypatch, capsys):
    monkeypatch.delenv("MI_COURSE_DEVICE", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("MI_COURSE_THREADS", "1")
    before = torch.get_num_threads()
    try:
        runtime.setup(seed=3)
        a = torch.rand(3)
        runtime.setup(seed=3)
        assert torch.equal(a, torch.rand(3))
        assert torch.get_num_threads() == 1
        import os
        assert os.environ["TQDM_DISABLE"] == "1"  # pytest is running
        assert "1 torch thread" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)


def test_default_threads_leave_a_core(monkeypatch):
    monkeypatch.delenv("MI_COURSE_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert runtime.default_threads() == 1
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert runtime.default_threads() == 4
