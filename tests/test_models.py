"""Model loading: shipped models offline with their headline findings, the registry, GPT-2's paths."""

import json
import math
import socket
import time

import huggingface_hub.constants
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from mi_course.data.repeated_tokens import repeated_tokens
from mi_course.induction import loss_by_half, score_heads
from mi_course.models import ModelUnavailableError, list_models, load_model, snapshot_steps
from mi_course.models import checkpoint, hub
from mi_course.models.registry import MODELS
from mi_course.train import attn_only_2l

SHIPPED = [name for name, spec in MODELS.items() if spec.shipped]
SEG_LEN = attn_only_2l.EVAL_SEG_LEN


@pytest.fixture(scope="module")
def attn_only():
    return load_model("attn-only-2l", device="cpu")


@pytest.fixture(scope="module")
def probe(attn_only):
    return repeated_tokens(attn_only.tokenizer, batch=64, seg_len=SEG_LEN, seed=0)


# --- shipped models ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_offline_ready_to_use(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model(name, device="cpu")
    assert not model.training, "models come back in eval mode"
    assert model.tokenizer is not None and len(model.tokenizer) == model.cfg.d_vocab
    tokens = model.to_tokens(" ".join(model.tokenizer.convert_ids_to_tokens([5, 6, 7])))
    assert tokens[0, 0].item() == model.tokenizer.bos_token_id, "to_tokens prepends BOS"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_records_release_metrics_that_meet_its_criteria(name):
    from mi_course.train import training_module

    recorded = json.loads((checkpoint.WEIGHTS_DIR / name / checkpoint.METRICS_FILE).read_text())
    assert {"seed", "steps"} <= set(recorded)
    assert training_module(name).missed_targets(recorded) == []


@pytest.mark.parametrize("name", SHIPPED)
def test_registry_descriptions_state_the_shipped_architecture(name):
    """A size named in a model's registry description (d_model N, N heads, N-layer) is the
    size of the shipped model."""
    import re

    from mi_course.models.registry import get_spec

    config = json.loads((checkpoint.WEIGHTS_DIR / name / "config.json").read_text())
    if config.get("model_type") == "gpt2":  # a Hugging Face GPT-2 config names the sizes its own way
        config = {"d_model": config["n_embd"], "n_heads": config["n_head"], "n_layers": config["n_layer"]}
    description = get_spec(name).description
    for pattern, key in ((r"d_model (\d+)", "d_model"), (r"(\d+) heads", "n_heads"), (r"(\d+)-layer", "n_layers")):
        for stated in re.findall(pattern, description):
            assert int(stated) == config[key], f"{name}: the description says {key} {stated}, the model has {config[key]}"


def test_default_device_comes_from_runtime(monkeypatch):
    monkeypatch.setenv("MI_COURSE_DEVICE", "cpu")
    assert next(load_model("attn-only-2l").parameters()).device.type == "cpu"


def test_attn_only_has_previous_token_and_induction_heads(attn_only, probe):
    scores = score_heads(attn_only, probe, SEG_LEN)
    assert scores.previous_token[0].max() >= 0.8, f"layer-0 previous-token scores {scores.previous_token[0]}"
    assert scores.induction[1].max() >= 0.7, f"layer-1 induction scores {scores.induction[1]}"


def test_attn_only_predicts_the_repeat(attn_only, probe):
    losses = loss_by_half(attn_only, probe, SEG_LEN)
    n_words = len(attn_only_2l.WORDS)
    assert losses.first > 0.9 * math.log(n_words), f"the first copy is random: loss ~ ln({n_words}); got {losses.first:.2f}"
    assert losses.repeat < 0.2 * losses.first, f"repeat {losses.repeat:.3f} vs first {losses.first:.2f}"


def test_attn_only_meets_its_release_criteria(attn_only):
    """The training module's own release check, on its own evaluation batch."""
    assert not attn_only_2l.missed_targets(attn_only_2l.evaluate(attn_only))


def test_release_metrics_on_record_still_hold(attn_only):
    """metrics.json (quoted in the model card) matches what the shipped weights measure now."""
    recorded = json.loads((checkpoint.WEIGHTS_DIR / "attn-only-2l" / checkpoint.METRICS_FILE).read_text())
    measured = attn_only_2l.evaluate(attn_only)
    assert measured == pytest.approx({key: recorded[key] for key in measured}, abs=2e-3)


def test_snapshots_show_induction_forming(attn_only, probe):
    steps = snapshot_steps("attn-only-2l")
    assert 8 <= len(steps) <= 12 and steps == sorted(steps) and steps[0] == 0
    start = score_heads(load_model("attn-only-2l", device="cpu", step=steps[0]), probe, SEG_LEN)
    end = load_model("attn-only-2l", device="cpu", step=steps[-1])
    assert start.induction.max() < 0.3, "no induction head at initialisation"
    final = attn_only(probe)
    assert (end(probe) - final).abs().max() < 0.05, "the last snapshot is the released model in float16"


def test_checkpoint_round_trip(attn_only, probe, tmp_path):
    loaded = checkpoint.load_checkpoint(checkpoint.save_checkpoint(attn_only, tmp_path / "copy"))
    for name, tensor in attn_only.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert torch.equal(loaded(probe), attn_only(probe))
    text = " ".join(attn_only_2l.WORDS[:3]) + " not-a-word"
    assert loaded.to_str_tokens(text) == attn_only.to_str_tokens(text) == ["<bos>", *attn_only_2l.WORDS[:3], "<unk>"]


def test_loading_does_not_touch_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    load_model("attn-only-2l", device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_shipped_weights_fit_the_budget():
    total = checkpoint.directory_size(checkpoint.WEIGHTS_DIR)
    assert total <= 10e6, f"shipped weights take {total / 1e6:.1f} MB; the budget is 10 MB"


# --- the registry -----------------------------------------------------------------------


def test_list_models_describes_every_model(monkeypatch, attn_only):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = {row.name: row for row in list_models()}
    assert set(rows) == set(MODELS)
    attn = rows["attn-only-2l"]
    assert attn.available and attn.source == "shipped" and attn.chapter == "03_induction_heads"
    assert attn.parameters == sum(tensor.numel() for tensor in attn_only.state_dict().values())
    assert 0 < attn.size_mb < 2
    gpt2 = rows["gpt2-small"]
    assert not gpt2.available and gpt2.source == "hub (disabled)" and gpt2.parameters > 1e8


def test_unknown_name_suggests_a_near_miss():
    with pytest.raises(ValueError, match="Did you mean 'attn-only-2l'"):
        load_model("attn-only-2")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_missing_cuda_is_explained():
    with pytest.raises(ValueError, match="no CUDA device"):
        load_model("attn-only-2l", device="cuda")


def test_hub_models_have_no_snapshots():
    with pytest.raises(ValueError, match="only shipped models"):
        load_model("gpt2-small", step=0)


def test_missing_snapshot_lists_the_steps():
    with pytest.raises(ValueError, match="snapshots are at steps"):
        load_model("attn-only-2l", step=7)


# --- gpt2-small -------------------------------------------------------------------------


def _assert_fails_fast(message_parts):
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as raised:
        load_model("gpt2-small", device="cpu")
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"took {elapsed:.1f} s"
    for part in message_parts:
        assert part in str(raised.value)
    return str(raised.value)


def test_gpt2_fails_at_once_when_hub_switched_off(monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = _assert_fails_fast(["HF_HUB_OFFLINE", "load_model('attn-only-2l')"])
    same_chapter = [n for n in SHIPPED if MODELS[n].chapter == MODELS["gpt2-small"].chapter]
    if same_chapter:
        assert message.index(same_chapter[0]) < message.index("attn-only-2l"), "the chapter's own model first"


@pytest.fixture
def silent_server():
    """A local address that accepts connections but never answers, like a hub behind a dead link."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("answer", ["refused", "silent"])
def test_gpt2_fails_within_2s_when_hub_unreachable(monkeypatch, tmp_path, silent_server, answer):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9" if answer == "refused" else silent_server)
    _assert_fails_fast(["did not answer", "load_model('attn-only-2l')"])


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A GPT-2-architecture model small enough to build offline, with a word-level tokenizer."""
    tokenizer = attn_only_2l.build_tokenizer(tmp_path_factory.mktemp("gpt2tok") / "tokenizer")
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=len(tokenizer), n_positions=64)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config), tokenizer


def test_hub_boot_path_with_a_local_gpt2(tiny_gpt2):
    hf_model, tokenizer = tiny_gpt2
    model = hub.boot_hub_model("gpt2", "cpu", hf_model=hf_model, tokenizer=tokenizer)
    assert not model.training
    tokens = repeated_tokens(model.tokenizer, batch=2, seg_len=6)
    scores = score_heads(model, tokens, 6)
    assert scores.induction.shape == (2, 4)
    model.set_use_attn_result(True)  # works on GPT-2 bridges, unlike native ones


def test_gpt2_loads_from_local_cache_without_network(tiny_gpt2, tmp_path, monkeypatch):
    """A model in the Hugging Face cache loads with the hub unreachable and no offline flag."""
    hf_model, tokenizer = tiny_gpt2
    snapshot = tmp_path / "models--gpt2" / "snapshots" / ("0" * 40)
    GPT2LMHeadModel(hf_model.config).save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    (tmp_path / "models--gpt2" / "refs").mkdir()
    (tmp_path / "models--gpt2" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    offline_flag = huggingface_hub.constants.HF_HUB_OFFLINE

    assert hub.availability("gpt2") == "cached"
    model = load_model("gpt2-small", device="cpu")
    assert not model.training and model.cfg.n_layers == 2
    assert huggingface_hub.constants.HF_HUB_OFFLINE is offline_flag, "the offline switch is restored"
