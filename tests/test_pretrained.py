"""The shipped trained models: export, ship and load round trip; a corrupted or edited file, another config, an
unknown model or a factory outside tadlab are refused with a message that names them; and every model that ships
reproduces its manifest's testing metrics (on the first testing videos of its world)."""
import json

import pytest
import torch

import tadlab.pretrained as pretrained
from tadlab.eval import ANET_TIOU, THUMOS_TIOU
from tadlab.experiments import standard_world
from tadlab.models import TemporalContextClassifier

FACTORY = "tadlab.models.baseline:TemporalContextClassifier"


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """One tiny model exported and shipped into a temporary pretrained folder that the module then reads."""
    target = tmp_path / "pretrained"
    target.mkdir()
    torch.manual_seed(0)
    model = TemporalContextClassifier(8, 3)
    entry = pretrained.export(model, tmp_path / "exported", name="context", preset="anet", seed=0, factory=FACTORY,
                              kwargs={"feature_dim": 8, "num_classes": 3}, world={"preset": "anet"},
                              recipe={"lr": 3e-3}, metrics={"average_mAP": 0.5, "check": {"average_mAP": 0.4}})
    pretrained.ship([(entry, tmp_path / "exported")], target)
    monkeypatch.setattr(pretrained, "HERE", target)
    monkeypatch.setattr(pretrained, "MANIFEST", target / "manifest.json")
    return model, target


def test_export_ship_and_load_round_trip(shipped):
    model, target = shipped
    assert pretrained.available() == [{"name": "context", "preset": "anet", "seed": 0}]
    loaded = pretrained.load("context", preset="anet", seed=0, num_classes=3)
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    entry = pretrained.entry("context", "anet", 0)
    assert entry["factory"] == FACTORY and entry["recipe"] == {"lr": 3e-3} and len(entry["sha256"]) == 64


def test_shipping_keeps_other_models_unless_pruned(shipped, tmp_path):
    _, target = shipped
    other = pretrained.export(TemporalContextClassifier(8, 3), tmp_path / "other", name="context", preset="thumos",
                              seed=0, factory=FACTORY, kwargs={"feature_dim": 8, "num_classes": 3}, world={},
                              recipe={}, metrics={"check": {}})
    pretrained.ship([(other, tmp_path / "other")], target)
    assert [m["preset"] for m in pretrained.available()] == ["anet", "thumos"]
    pretrained.ship([(other, tmp_path / "other")], target, prune=True)
    assert [m["preset"] for m in pretrained.available()] == ["thumos"]
    assert sorted(p.name for p in target.glob("*.pt")) == ["context_thumos_seed0.pt"]


def test_a_corrupted_or_edited_file_is_refused_naming_it(shipped):
    _, target = shipped
    path = target / "context_anet_seed0.pt"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="context_anet_seed0.pt does not match its manifest entry"):
        pretrained.load("context", preset="anet", seed=0)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="weights of shipped model 'context'"):
        pretrained.load("context", preset="anet", seed=0)


def test_weights_that_do_not_fit_the_config_are_refused(shipped):
    _, target = shipped
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["models"][0]["kwargs"]["num_classes"] = 5  # an edited manifest: the weights are of 3 classes
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not fit the model.*another config"):
        pretrained.load("context", preset="anet", seed=0)


def test_another_config_an_unknown_model_or_a_foreign_factory_is_refused(shipped):
    with pytest.raises(ValueError, match=r"has another config: num_classes=3 \(asked 7\)"):
        pretrained.load("context", preset="anet", seed=0, num_classes=7)
    with pytest.raises(ValueError, match="no shipped model 'gsmt'.*available"):
        pretrained.load("gsmt", preset="anet", seed=0)
    with pytest.raises(ValueError, match="must be 'tadlab.<module>:<callable>'"):
        pretrained.build({"factory": "os:system", "kwargs": {}})


def test_export_checks_that_the_entry_rebuilds_the_model(tmp_path):
    with pytest.raises(ValueError, match="does not fit the model"):
        pretrained.export(TemporalContextClassifier(8, 3), tmp_path, name="context", preset="anet", seed=0,
                          factory=FACTORY, kwargs={"feature_dim": 8, "num_classes": 4}, world={}, recipe={},
                          metrics={"check": {}})
    with pytest.raises(ValueError, match="must hold 'check'"):
        pretrained.export(TemporalContextClassifier(8, 3), tmp_path, name="context", preset="anet", seed=0,
                          factory=FACTORY, kwargs={"feature_dim": 8, "num_classes": 3}, world={}, recipe={},
                          metrics={})


TIOU = {"thumos": THUMOS_TIOU, "anet": ANET_TIOU}
WORLDS = {}


@pytest.mark.parametrize("model_key", pretrained.available(), ids=lambda k: f"{k['name']}-{k['preset']}-{k['seed']}")
def test_every_shipped_model_reproduces_its_manifest_metrics(model_key):
    entry = pretrained.entry(**model_key)
    world_key = json.dumps(entry["world"], sort_keys=True)
    if world_key not in WORLDS:
        WORLDS[world_key] = standard_world(**entry["world"])
    model = pretrained.load(**model_key)
    check = pretrained.check_metrics(model, WORLDS[world_key], TIOU[entry["preset"]], **entry["detect"])
    assert check["videos"] == entry["metrics"]["check"]["videos"]
    assert check["average_mAP"] == pytest.approx(entry["metrics"]["check"]["average_mAP"], abs=0.005)
