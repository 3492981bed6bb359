from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsched.errors import PowerError, UnknownNameError
from hwsched.power.meters import (
    METERS,
    ColumnMap,
    LineKind,
    MeterParseError,
    MeterReading,
    TegrastatsParser,
    classify_line,
    make_parser,
    parse_columns,
)


def test_ina219_default_columns():
    reading = make_parser("ina219").parse("1500,5.02,12.3,123.0,617.5")
    assert reading == MeterReading(617.5, 1.5, 5.02, 123.0)


def test_ina226_power_from_bus_voltage_and_current_when_no_power_column():
    parser = make_parser("ina226", parse_columns("us,bus_V,current_mA"))
    reading = parser.parse("2000000, 4.9, 300")
    assert reading.power_mw == pytest.approx(1470.0)
    assert reading.meter_t_s == 2.0


def test_units_in_column_names_are_applied():
    parser = make_parser("ina219", ("millis", "bus_mV", "current_A", "power_W", "shunt_mV"))
    reading = parser.parse("250;5000;0.5;2.5;1.1")
    assert reading == MeterReading(2500.0, 0.25, 5.0, 500.0)


def test_bus_voltage_preferred_over_load_voltage_for_computed_power():
    parser = make_parser("ina219", ("millis", "load_V", "bus_V", "current_mA"))
    assert parser.parse("1\t5.1\t5.0\t100").power_mw == pytest.approx(500.0)


def test_generic_timestamp_power_w():
    reading = make_parser("generic").parse("1714564800.25,3.75")
    assert reading == MeterReading(3750.0, 1714564800.25)


@pytest.mark.parametrize(
    ("line", "power_mw", "stamp_s"),
    [
        (
            "RAM 2344/3964MB (lfb 1x2MB) CPU [12%@1479,3%@1479] EMC_FREQ 0% GR3D_FREQ 0% "
            "PLL@24C CPU@26C POM_5V_IN 1750/1628 POM_5V_GPU 0/0 POM_5V_CPU 331/331",
            1750.0,
            None,
        ),
        (
            "08-23-2023 10:12:33 RAM 2210/7620MB CPU [2%@729] VDD_GPU_SOC 1592mW/1592mW "
            "VDD_CPU_CV 398mW/398mW VIN_SYS_5V0 2425mW/2425mW VDD_IN 4123mW/4001mW",
            4123.0,
            1692785553.0,
        ),
    ],
)
def test_tegrastats_board_input_rail(line, power_mw, stamp_s):
    reading = make_parser("tegrastats").parse(line)
    assert reading.power_mw == power_mw
    assert reading.meter_t_s == stamp_s


def test_tegrastats_named_rail_does_not_match_a_longer_rail_name():
    parser = TegrastatsParser(("VDD_IN",))
    with pytest.raises(MeterParseError, match="no rail VDD_IN"):
        parser.parse("RAM 1/2MB XVDD_IN 10/10")
    assert make_parser("tegrastats", rail="POM_5V_GPU").parse("POM_5V_GPU 12/10").power_mw == 12


def test_wrong_field_count_and_non_numbers_are_parse_errors():
    parser = make_parser("ina219")
    with pytest.raises(MeterParseError, match="expected 5 fields"):
        parser.parse("100,5.0")
    with pytest.raises(MeterParseError, match="field power_mW is not a number"):
        parser.parse("100,5.0,1,2,x")
    with pytest.raises(MeterParseError, match="not finite"):
        parser.parse("100,5.0,1,2,inf")


def test_column_map_errors_name_the_column():
    with pytest.raises(PowerError, match="unknown meter column 'watts'; valid column names: "):
        ColumnMap.from_names(("ms", "watts"))
    with pytest.raises(PowerError, match="need a power column"):
        ColumnMap.from_names(("ms", "bus_V"))
    with pytest.raises(PowerError, match="two power columns"):
        ColumnMap.from_names(("power_mW", "power_W"))


def test_meter_registry_and_option_errors():
    assert set(METERS) == {"ina219", "ina226", "tegrastats", "generic"}
    with pytest.raises(UnknownNameError, match="valid: generic, ina219, ina226, tegrastats"):
        make_parser("ppk3")
    with pytest.raises(PowerError, match="--rail applies to tegrastats only"):
        make_parser("ina219", rail="VDD_IN")
    with pytest.raises(PowerError, match="tegrastats has no columns"):
        make_parser("tegrastats", ("ms", "power_mW"))


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"100,5.0,1.0,200.0,1000.0\r", LineKind.SAMPLE),
        (b"ms,bus_V,shunt_mV,current_mA,power_mW", LineKind.HEADER),
        (b"Hello from INA219 sketch v2", LineKind.BANNER),
        (b"\xff\xfe\x00 7", LineKind.GARBAGE),
        (b"100,5.0,1.0", LineKind.MALFORMED),
        (b"", LineKind.MALFORMED),
    ],
)
def test_classify_line(raw, kind):
    assert classify_line(make_parser("ina219"), raw).kind is kind


def test_cut_tegrastats_line_is_malformed_not_a_banner():
    line = classify_line(make_parser("tegrastats"), b"RAM 2344/3964MB (lfb 1x2MB) CPU [12%")
    assert line.kind is LineKind.MALFORMED


PARSERS = [make_parser(name) for name in METERS]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), index=st.integers(0, len(PARSERS) - 1))
def test_fuzz_parse_raises_only_meter_parse_errors(text, index):
    try:
        reading = PARSERS[index].parse(text)
    except MeterParseError:
        return
    assert isinstance(reading.power_mw, float)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200), index=st.integers(0, len(PARSERS) - 1))
def test_fuzz_classify_never_raises(raw, index):
    line = classify_line(PARSERS[index], raw)
    assert (line.kind is LineKind.SAMPLE) == (line.reading is not None)


@settings(max_examples=200, deadline=None)
@given(
    fields=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.sampled_from(["", "-", "1e999", "0x10", "5.0.1", "nan", " 3 "]),
        ),
        min_size=0,
        max_size=7,
    )
)
def test_fuzz_csv_like_lines(fields):
    line = classify_line(PARSERS[0], ",".join(fields).encode())
    if line.kind is LineKind.SAMPLE:
        assert len(fields) == 5
