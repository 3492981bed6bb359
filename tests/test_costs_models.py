"""Every cost model on tiny graphs built here, with the numbers worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hwsched.costs import get_model, load_profile, model_names
from hwsched.costs.energy import active_idle, active_only, stage_energy_mj
from hwsched.costs.latency import measured, param_stream_ms, roofline
from hwsched.costs.memory import arena, largest_tensor, memory_fit
from hwsched.costs.transfer import encoding_dtype, framed, ideal
from hwsched.errors import ProfileError, UnknownNameError
from hwsched.hardware import load_link, load_platform
from hwsched.ir import Layer, LayerGraph, OpKind, Tensor


def toy_platform(tmp_path, **memory):
    """1 GOP/s fp32 (2 GOP/s int8), efficiency 1 (0.5 for activations), 1 GB/s, 1 ms/layer."""
    data = {
        "schema": "hwsched-hardware/1",
        "kind": "platform",
        "name": "toy",
        "description": "toy",
        "precisions": {
            "default": "fp32",
            "compute_gops": {
                "fp32": {"value": 1, "estimate": "t"},
                "int8": {"value": 2, "estimate": "t"},
            },
        },
        "op_efficiency": {
            "default": {"value": 1, "estimate": "t"},
            "activation": {"value": 0.5, "estimate": "t"},
        },
        "ops": ["input", "dense", "activation", "elementwise"],
        "ops_source": "test",
        "memory": {
            "bandwidth_gbps": {"value": 1, "estimate": "t"},
            "ram_mib": {"value": 1, "estimate": "t"},
            **{k: {"value": v, "estimate": "t"} for k, v in memory.items()},
        },
        "overhead": {
            "layer_ms": {"value": 1, "estimate": "t"},
            "invoke_ms": {"value": 2, "estimate": "t"},
        },
        "power": {
            "active_w": {"value": 5, "estimate": "t"},
            "idle_w": {"value": 1, "estimate": "t"},
        },
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_platform(path)


def t(name, elements, dtype="float32"):
    return Tensor(name, producer=name, shape=(1, elements), dtype=dtype)


@pytest.fixture
def chain():
    """x(1000) -> fc(1000 out, 1e6 MAC) -> relu -> add(x-branch... of fc and relu)."""
    return LayerGraph(
        "chain",
        (
            Layer("x", OpKind.INPUT, (), (t("x", 1000),)),
            Layer(
                "fc",
                OpKind.DENSE,
                ("x",),
                (t("fc", 1000),),
                params=1000,
                macs=1_000_000,
                flops=2_000_000,
            ),
            Layer("relu", OpKind.ACTIVATION, ("fc",), (t("relu", 1000),), flops=1000),
            Layer("add", OpKind.ELEMENTWISE, ("fc", "relu"), (t("add", 1000),), flops=1000),
        ),
        outputs=("add",),
    )


def test_roofline_by_hand(tmp_path, chain):
    toy = toy_platform(tmp_path)
    ms = roofline(chain, toy, "fp32").latency_ms
    # fc: compute 2e6 / 1e9 s = 2 ms; memory (4000 in + 4000 out + 4000 w) / 1e9 = 0.012 ms
    # relu: compute 1000 / 0.5e9 = 0.002 ms; memory 8000 B = 0.008 ms -> memory-bound
    # add: compute 0.001 ms; memory 12000 B = 0.012 ms; +1 ms dispatch each
    assert ms.tolist() == pytest.approx([0.0, 3.0, 1.008, 1.012])
    int8 = roofline(chain, toy, "int8").latency_ms  # 2 GOP/s and 1-byte tensors
    assert int8.tolist() == pytest.approx([0.0, 2.0, 1.002, 1.003])


def test_unscored_layers_cost_memory_traffic_and_are_listed(tmp_path):
    g = LayerGraph(
        "u",
        (
            Layer("x", OpKind.INPUT, (), (t("x", 250),)),
            Layer("odd", OpKind.OTHER, ("x",), (t("odd", 250),), macs=None, flops=None),
        ),
        outputs=("odd",),
    )
    result = roofline(g, toy_platform(tmp_path), "fp32")
    assert result.unscored == ("odd",)
    assert result.latency_ms[1] == pytest.approx(1.002)  # 2000 B at 1 GB/s + 1 ms


def test_measured_spreads_segments_by_roofline_share(tmp_path, chain):
    toy = toy_platform(tmp_path)
    profile_path = tmp_path / "p.json"
    profile_path.write_text(
        json.dumps(
            {
                "model": "chain",
                "platform": "toy",
                "threads": 1,
                "segments": [{"first_layer": "x", "last_layer": "relu", "latency_ms": 10.0}],
            }
        )
    )
    result = measured(chain, toy, "fp32", load_profile(profile_path))
    # 10 ms - 2 ms invoke = 8 ms over roofline 0 : 3 : 1.008
    assert result.latency_ms[:3].sum() == pytest.approx(8.0)
    assert result.latency_ms[1] == pytest.approx(8.0 * 3 / 4.008)
    assert result.latency_ms[3] == pytest.approx(1.012)  # not measured: roofline kept
    assert result.estimated == ("add",)


@pytest.mark.parametrize(
    ("profile", "match"),
    [
        (
            {"model": "other", "platform": "toy", "layers": [{"name": "fc", "latency_ms": 1}]},
            r"profile is for model 'other', not 'chain'",
        ),
        (
            {"model": "chain", "platform": "toy", "layers": [{"name": "zz", "latency_ms": 1}]},
            r"name 'zz' is not a layer of 'chain'",
        ),
        (
            {
                "model": "chain",
                "platform": "toy",
                "segments": [{"first_layer": "relu", "last_layer": "fc", "latency_ms": 1}],
            },
            r"ends before it starts",
        ),
        (
            {
                "model": "chain",
                "platform": "toy",
                "segments": [{"first_layer": "x", "last_layer": "relu", "latency_ms": 1}],
                "layers": [{"name": "fc", "latency_ms": 1}],
            },
            r"segments overlap at layer 'fc'",
        ),
        (
            {
                "model": "chain",
                "platform": "toy",
                "segments": [{"first_layer": "x", "last_layer": "fc", "latency_ms": -1}],
            },
            r"segments\[0\]: field 'latency_ms' must be >= 0",
        ),
        ({"model": "chain", "platform": "toy"}, r"needs a non-empty 'segments' or 'layers'"),
        (
            {"model": "chain", "platform": "rpi4", "layers": [{"name": "fc", "latency_ms": 1}]},
            r"measured on 'rpi4', not 'toy'",
        ),
    ],
)
def test_profile_errors(tmp_path, chain, profile, match):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile))
    with pytest.raises(ProfileError, match=match):
        measured(chain, toy_platform(tmp_path), "fp32", load_profile(path))


def test_arena_lifetimes_by_hand(chain):
    # x live at 0..1 (last use fc); fc live 1..3 (used by add); relu 2..3; add 3 (output)
    assert arena(chain, "fp32").live_bytes.tolist() == [4000, 8000, 8000, 12000]
    assert arena(chain, "int8").live_bytes.tolist() == [1000, 2000, 2000, 3000]
    # cnn-parted rule: inputs + outputs of the running layer only
    assert largest_tensor(chain, "fp32").live_bytes.tolist() == [4000, 8000, 8000, 12000]
    assert arena(chain, "fp32").peak_bytes(1, 2) == 8000


def test_arena_keeps_a_skip_tensor_alive_across_the_block():
    g = LayerGraph(
        "skip",
        (
            Layer("x", OpKind.INPUT, (), (t("x", 100),)),
            Layer("a", OpKind.ACTIVATION, ("x",), (t("a", 10),)),
            Layer("b", OpKind.ACTIVATION, ("a",), (t("b", 10),)),
            Layer("add", OpKind.ELEMENTWISE, ("x", "b"), (t("add", 100),)),
        ),
        outputs=("add",),
    )
    # x (400 B) stays live until add; a dies at b
    assert arena(g, "fp32").live_bytes.tolist() == [400, 440, 480, 840]
    assert largest_tensor(g, "fp32").live_bytes.tolist() == [400, 440, 80, 840]


def test_memory_fit_with_and_without_flash(tmp_path):
    mib = 1024 * 1024
    ram_only = toy_platform(tmp_path)
    assert memory_fit(ram_only, mib // 2, mib // 2) is None
    assert "exceed toy RAM" in memory_fit(ram_only, mib // 2, mib // 2 + 1)
    mcu = toy_platform(tmp_path, flash_mib=2)
    assert memory_fit(mcu, 2 * mib, mib) is None
    assert "exceed toy flash" in memory_fit(mcu, 2 * mib + 1, 0)
    assert "exceed toy RAM" in memory_fit(mcu, 0, mib + 1)


def test_param_cache_streams_the_excess(tmp_path):
    tpu = toy_platform(tmp_path, param_cache_mib=1, offchip_bandwidth_gbps=1)
    assert param_stream_ms(tpu, 1024 * 1024) == 0.0
    assert param_stream_ms(tpu, 1024 * 1024 + 1_000_000) == pytest.approx(1.0)


def test_framed_transfer_by_hand():
    gige = load_link("gige")  # 1 Gbit/s, 1460 B payload + 78 B per frame, 0.1 ms per message
    cost = framed(gige, 3000, 2)
    assert cost.wire_bytes == 3000 + 3 * 78
    assert cost.latency_ms == pytest.approx(3234 * 8 / 1e9 * 1e3 + 0.2)
    assert cost.energy_mj == pytest.approx(0.6 * 3234 * 8 / 1e9 * 1e3)
    uart = load_link("uart921600")  # 10 bits per byte, 4096 B frames + 8 B, 10 nJ/bit
    cost = framed(uart, 1000, 1)
    assert cost.wire_bytes == 1008
    assert cost.latency_ms == pytest.approx(1008 * 10 / 921600 * 1e3 + 0.05)
    assert cost.energy_mj == pytest.approx(1008 * 10 * 10e-6)
    ble = load_link("ble")  # 244 B frames + 17 B, 380 us gap per frame, 7.5 ms per message
    cost = framed(ble, 488, 1)
    assert cost.latency_ms == pytest.approx((488 + 34) * 8 / 1e6 * 1e3 + 2 * 0.38 + 7.5)
    assert framed(gige, 0, 0).latency_ms == 0.0
    assert ideal(gige, 1000, 1).latency_ms == pytest.approx(8e-3)


def test_link_encoding_is_what_the_head_stage_outputs():
    gige = load_link("gige")  # the consumer hands over on arrival (test_review4_wire_dtype)
    assert encoding_dtype(gige, "fp32", "int8") == "float32"
    assert encoding_dtype(gige, "fp16", "fp32") == "float32"
    assert encoding_dtype(gige, "int8", "fp16") == "int8"


def test_energy_models_by_hand(tmp_path):
    toy = toy_platform(tmp_path)  # 5 W active, 1 W idle
    assert stage_energy_mj(active_idle(toy), busy_ms=2, period_ms=10) == pytest.approx(18.0)
    assert stage_energy_mj(active_only(toy), busy_ms=2, period_ms=10) == pytest.approx(10.0)


def test_registries_have_defaults_and_reject_unknown_names():
    assert get_model("latency") is roofline
    assert set(model_names("memory")) == {"arena", "largest_tensor"}
    with pytest.raises(UnknownNameError, match=r"unknown latency model 'magic'; valid: measured"):
        get_model("latency", "magic")
    with pytest.raises(UnknownNameError, match=r"unknown cost model kind 'speed'"):
        get_model("speed")
    assert isinstance(arena, type(get_model("memory", "arena")))
    assert np.isfinite(
        roofline(
            LayerGraph("one", (Layer("x", OpKind.INPUT, (), (t("x", 1),)),), ("x",)),
            load_platform("rpi4"),
            "fp32",
        ).latency_ms
    ).all()
