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
