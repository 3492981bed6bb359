"""Link descriptors for tests that shape a link with ``tc``: only the rate and latency vary."""


def link_yaml(name: str, bandwidth_bps: int, latency_ms: float) -> str:
    """A valid link descriptor (every number marked a test value) named ``name``."""
    return (
        f"schema: hwsched-hardware/1\nkind: link\nname: {name}\n"
        f"description: a {bandwidth_bps / 1e6:g} Mbit/s test link\n"
        f"bandwidth_bps: {{value: {int(bandwidth_bps)}, estimate: \"test\"}}\n"
        "bits_per_byte: {value: 8, estimate: \"test\"}\n"
        "frame:\n  payload_bytes: {value: 1460, estimate: \"test\"}\n"
        "  overhead_bytes: {value: 78, estimate: \"test\"}\n"
        f"message_latency_ms: {{value: {latency_ms}, estimate: \"test\"}}\n"
        "power:\n  active_w: {value: 0.1, estimate: \"test\"}\n"
    )
