"""ModelUpdaterConfig: the recipe's defaults, deploy-time rejection with reasons, the older modelPath key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from support.model_dirs import published_model

from vla_edge.bus.memory import InMemoryBroker
from vla_edge.components.base import load_config
from vla_edge.components.model_updater.component import ModelUpdaterComponent
from vla_edge.components.model_updater.config import (
    ModelSpec,
    ModelUpdaterConfig,
    so101_joint_limits,
)
from vla_edge.errors import ConfigurationError

RECIPE = Path(__file__).resolve().parents[3] / "components" / "model-updater" / "recipe.yaml"


def recipe_defaults() -> dict[str, Any]:
    return yaml.safe_load(RECIPE.read_text())["ComponentConfiguration"]["DefaultConfiguration"]


def test_recipe_defaults_are_the_config_defaults() -> None:
    defaults = recipe_defaults()
    assert load_config(ModelUpdaterConfig, defaults) == ModelUpdaterConfig()
    assert set(defaults) - {"accessControl"} == set(ModelUpdaterConfig().model_dump(by_alias=True))
    assert set(defaults["model"]) == set(ModelSpec().model_dump(by_alias=True))
    assert ModelUpdaterConfig().joint_limits == so101_joint_limits()
    assert ModelUpdaterConfig().joint_limits["gripper"] == (-10.0, 100.0)


def test_recipe_grants_exactly_what_the_updater_uses() -> None:
    acl = recipe_defaults()["accessControl"]
    grants = {(op, resource) for policy in acl["aws.greengrass.ipc.pubsub"].values()
              for op in policy["operations"] for resource in policy["resources"]}
    publish, subscribe = "aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"
    assert grants == {
        (publish, "vla-edge/model/status"), (publish, "vla-edge/model/command"),
        (publish, "vla-edge/health/model_updater"),
        (subscribe, "vla-edge/model/report"), (subscribe, "vla-edge/health/inference"),
        (subscribe, "vla-edge/arm/joint_state"),
    }
    mqtt = [(op, resource) for policy in acl["aws.greengrass.ipc.mqttproxy"].values()
            for op in policy["operations"] for resource in policy["resources"]]
    assert mqtt == [("aws.greengrass#PublishToIoTCore", "vla-edge/{iot:thingName}/model/status")]
    assert set(acl) == {"aws.greengrass.ipc.pubsub", "aws.greengrass.ipc.mqttproxy"}


@pytest.mark.parametrize(("model", "words"), [
    ({"source": "ftp"}, ["model.source", "'s3'"]),
    ({"source": "s3", "prefix": "models/pick/2"}, ["bucket"]),
    ({"source": "s3", "bucket": "models/pick"}, ["bucket name only"]),
    ({"source": "local", "path": "models/pick"}, ["absolute"]),
    ({"source": "artifact"}, ["needs path"]),
    ({"source": "artifact", "path": "{artifacts:path}"}, ["interpolateComponentConfiguration"]),
    ({"source": "local", "path": "/m", "bucket2": "x"}, ["bucket2"]),
])
def test_deployment_with_a_bad_model_is_rejected_with_the_reason(broker: InMemoryBroker, tmp_path: Path,
                                                                  model: dict[str, Any], words: list[str]) -> None:
    bus = broker.bus({"storeDir": str(tmp_path / "store")})
    component = ModelUpdaterComponent(bus, load_config(ModelUpdaterConfig, bus.get_configuration()), thing_name="t")
    try:
        reason = bus.propose_configuration({**recipe_defaults(), "model": model})
        assert reason is not None, model
        for word in words:
            assert word in reason
        assert "deploy again" in reason
        assert bus.propose_configuration(recipe_defaults()) is None
    finally:
        component.close()


@pytest.mark.parametrize(("override", "word"), [
    ({"jointLimits": {"gripper": [100, 0]}}, "min < max"),
    ({"iotTopic": "vla-edge/{thing}/model"}, "placeholder"),
    ({"iotTopic": "vla-edge/+/model"}, "wildcards"),
    ({"modelPath": "/m", "model": {"source": "local", "path": "/n"}}, "modelPath and model"),
    ({"modelPath": "relative/dir"}, "absolute"),
    ({"keepPrevious": -1}, "keepPrevious"),
    ({"maxDownloadMbps": 3}, "maxDownloadMbps"),
])
def test_other_bad_keys_are_named(override: dict[str, Any], word: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid ModelUpdaterConfig") as caught:
        load_config(ModelUpdaterConfig, {**recipe_defaults(), **override})
    assert word in str(caught.value)


def test_keys_a_source_does_not_use_are_ignored() -> None:
    """A merge update keeps the previous source's keys; they must not block the deployment."""
    spec = load_config(ModelUpdaterConfig, {"model": {"source": "local", "path": "/m", "bucket": "old"}}).model
    assert spec.source == "local" and spec.describe() == "local /m"


def test_s3_manifest_key_and_cap() -> None:
    config = load_config(ModelUpdaterConfig, {"model": {"source": "s3", "bucket": "b", "prefix": "/models/pick/2/"},
                                              "maxDownloadMBps": 2.5})
    assert config.model.manifest_key == "models/pick/2/vla_edge_manifest.json"
    assert config.max_download_mbps == 2.5
    assert ModelSpec(source="s3", bucket="b").manifest_key == "vla_edge_manifest.json"


def test_store_defaults_to_the_cache(cache_dir: Path) -> None:
    assert ModelUpdaterConfig().store_root() == cache_dir / "store"
    assert ModelUpdaterConfig(store_dir="~/x").store_root() == Path("~/x").expanduser()


def test_iot_topic_names_the_thing() -> None:
    config = ModelUpdaterConfig()
    assert config.iot_topic_for("arm-7") == "vla-edge/arm-7/model/status"
    assert config.iot_topic_for(None) is None
    assert ModelUpdaterConfig(iot_topic="").iot_topic_for("arm-7") is None
    assert ModelUpdaterConfig(iot_topic="fleet/models").iot_topic_for(None) == "fleet/models"


def test_model_path_is_read_as_a_local_source_when_it_has_a_manifest(tmp_path: Path) -> None:
    with_manifest = tmp_path / "m"
    published_model(with_manifest, name="pick", version="3", weight_floats=100)
    assert ModelUpdaterConfig(model_path=str(with_manifest)).desired() == ModelSpec(source="local",
                                                                                    path=str(with_manifest))
    bare = tmp_path / "bare"
    bare.mkdir()
    assert ModelUpdaterConfig(model_path=str(bare)).desired() == ModelSpec(source="image")
    assert ModelUpdaterConfig().desired() == ModelSpec()
