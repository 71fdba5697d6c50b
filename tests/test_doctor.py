"""`mi-course doctor`: every finding is reported, problems come with a fix, the hub check is quick."""

import time

from mi_course import doctor
from mi_course.models import ModelUnavailableError


def _report(monkeypatch=None) -> tuple[int, str]:
    lines: list[str] = []
    status = doctor.run_doctor(out=lines.append)
    return status, "\n".join(lines)


def test_healthy_install_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    status, text = _report()
    assert status == 0, text
    for topic in ("python", "torch", "transformer-lens", "device", "threads", "model attn-only-2l", "model hub"):
        assert topic in text
    assert "switched off" in text and "every chapter runs offline" in text
    assert time.perf_counter() - start < 30


def test_unreachable_hub_is_reported_within_two_seconds(monkeypatch):
    from mi_course.models import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed local port: refused at once
    start = time.perf_counter()
    findings = doctor.check_hub()
    assert time.perf_counter() - start <= 2.0
    assert findings[0].detail.startswith("not reachable")
    assert hub.hub_reachable("gpt2") is False


def test_broken_model_gets_a_fix(monkeypatch):
    import mi_course.models as models

    def broken(name, device=None):
        raise ModelUnavailableError("weights missing")

    monkeypatch.setattr(models, "load_model", broken)
    status, text = _report()
    assert status == 1
    assert "FAIL  model attn-only-2l" in text and "python -m mi_course.train attn-only-2l" in text


def test_old_torch_is_a_failure(monkeypatch):
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda p: "2.1.0" if p == "torch" else real(p))
    torch_finding = next(f for f in doctor.check_versions() if f.topic == "torch")
    assert torch_finding.level == "FAIL" and "need >= 2.6" in torch_finding.detail and torch_finding.fix


def _torch_build(monkeypatch, cuda=None, rocm=None, usable=False, nvidia=False) -> doctor.Finding:
    """The torch-build finding on a pretend machine: which build, whether torch sees a GPU, and
    whether the machine has an NVIDIA GPU at all."""
    import torch

    monkeypatch.setattr(torch.version, "cuda", cuda)
    monkeypatch.setattr(torch.version, "hip", rocm, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: usable)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H100")
    monkeypatch.setattr(doctor, "nvidia_gpu_present", lambda: nvidia)
    [finding] = doctor.check_torch_build()
    assert finding.topic == "torch build"
    return finding


def test_torch_build_cpu_on_a_laptop_is_fine(monkeypatch):
    finding = _torch_build(monkeypatch)
    assert finding.level == "OK" and "CPU build" in finding.detail and "matches" in finding.detail


def test_torch_build_cuda_without_gpu_says_how_to_save_the_download(monkeypatch):
    finding = _torch_build(monkeypatch, cuda="13.0")
    assert finding.level == "WARN" and "CUDA 13.0 build" in finding.detail and "no GPU" in finding.detail
    assert "2.9 GB" in finding.fix and "whl/cpu" in finding.fix and doctor.TESTED_TORCH in finding.fix


def test_torch_build_cpu_on_an_nvidia_machine_says_how_to_get_cuda(monkeypatch):
    finding = _torch_build(monkeypatch, nvidia=True)
    assert finding.level == "WARN" and "CPU build" in finding.detail and "NVIDIA GPU" in finding.detail
    assert "CUDA build" in finding.fix and f"torch=={doctor.TESTED_TORCH}" in finding.fix


def test_torch_build_cuda_with_a_usable_gpu_is_fine(monkeypatch):
    finding = _torch_build(monkeypatch, cuda="12.6", usable=True, nvidia=True)
    assert finding.level == "OK" and "CUDA 12.6 build" in finding.detail and "NVIDIA H100" in finding.detail


def test_torch_build_cuda_that_cannot_use_the_gpu_points_at_the_driver(monkeypatch):
    finding = _torch_build(monkeypatch, cuda="13.0", nvidia=True)
    assert finding.level == "WARN" and "driver" in finding.detail and "driver" in finding.fix


def test_torch_build_rocm_is_named(monkeypatch):
    assert "ROCm 6.4 build" in _torch_build(monkeypatch, rocm="6.4", usable=True).detail
    finding = _torch_build(monkeypatch, rocm="6.4")
    assert finding.level == "WARN" and "no GPU" in finding.detail


def test_doctor_reports_the_torch_build(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(doctor, "check_models", lambda: [])
    status, text = _report()
    assert status == 0 and "torch build" in text
