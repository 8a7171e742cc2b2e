"""ActuatorConfig validation and agreement with the recipe's DefaultConfiguration."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vla_edge.components.actuator.config import ActuatorConfig
from vla_edge.components.base import load_config
from vla_edge.errors import ConfigurationError

RECIPE = Path(__file__).resolve().parents[3] / "components" / "actuator" / "recipe.yaml"


def recipe_defaults() -> dict:
    return yaml.safe_load(RECIPE.read_text())["ComponentConfiguration"]["DefaultConfiguration"]


def test_recipe_defaults_are_the_config_defaults() -> None:
    defaults = recipe_defaults()
    assert load_config(ActuatorConfig, defaults) == ActuatorConfig()
    keys = set(defaults) - {"accessControl"}
    assert keys == set(ActuatorConfig().model_dump(by_alias=True))


def test_so101_defaults() -> None:
    config = ActuatorConfig()
    assert config.names == ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    assert config.motor_ids == (1, 2, 3, 4, 5, 6)
    assert (config.baudrate, config.control_hz) == (1_000_000, 30.0)


def test_recipe_grants_exactly_what_the_actuator_uses() -> None:
    policies = recipe_defaults()["accessControl"]["aws.greengrass.ipc.pubsub"]
    grants = {
        (operation, resource)
        for policy in policies.values()
        for operation in policy["operations"]
        for resource in policy["resources"]
    }
    assert grants == {
        ("aws.greengrass#SubscribeToTopic", "vla-edge/policy/action_chunk"),
        ("aws.greengrass#SubscribeToTopic", "vla-edge/safety/estop"),
        ("aws.greengrass#SubscribeToTopic", "vla-edge/model/status"),
        ("aws.greengrass#PublishToTopic", "vla-edge/arm/joint_state"),
        ("aws.greengrass#PublishToTopic", "vla-edge/health/actuator"),
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"baudrate": 9600}, "baudrate"),
        ({"holdAfterS": 5.0, "torqueOffAfterS": 2.0}, "torqueOffAfterS"),
        ({"controlHz": 0}, "controlHz"),
        ({"maxStepDeg": -1}, "maxStepDeg"),
        ({"serialport": "/dev/ttyUSB0"}, "serialport"),
        ({"joints": []}, "joints"),
        ({"chunkMerge": "median"}, "chunkMerge"),
        ({"mergeDecay": -0.5}, "mergeDecay"),
        ({"mergeMaxChunks": 0}, "mergeMaxChunks"),
        ({"crossfadeS": 0}, "crossfadeS"),
        ({"maxActionLagS": 0.01}, "maxActionLagS"),  # shorter than a tick at 30 Hz
        ({"controlHz": 10}, "maxActionLagS"),  # the default lag no longer covers a tick
        ({"maxLeadS": 0}, "maxLeadS"),
        ({"joints": [{"name": "a", "id": 1, "minDeg": 10, "maxDeg": -10}]}, "minDeg"),
        (
            {
                "joints": [
                    {"name": "a", "id": 1, "minDeg": -1, "maxDeg": 1},
                    {"name": "b", "id": 1, "minDeg": -1, "maxDeg": 1},
                ]
            },
            "unique",
        ),
    ],
)
def test_invalid_configuration_is_named(override: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config(ActuatorConfig, {**recipe_defaults(), **override})


def test_lag_may_equal_one_tick() -> None:
    config = load_config(ActuatorConfig, {**recipe_defaults(), "controlHz": 20, "maxActionLagS": 0.05})
    assert config.max_action_lag_s == config.tick_s
