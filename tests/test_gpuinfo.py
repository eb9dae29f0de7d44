"""gpucnn.gpuinfo finds the NVML device CuPy uses and reads its facts, with stand-ins for CuPy
and pynvml so that it runs without a GPU (the GPU tests run it against the real ones)."""

from __future__ import annotations

import sys
import types

import pytest

from gpucnn import gpuinfo

UUID_BYTES = bytes.fromhex("8ef103e7b44ca851c5b855b9a59bb68e")
UUID = "GPU-8ef103e7-b44c-a851-c5b8-55b9a59bb68e"
BUS_ID = "0000:19:00.0"


class NVMLError(Exception):
    pass


def _fake_cupy(uuid_raw):
    """A cupy module whose current device reports ``uuid_raw`` (None: no device at all)."""

    class Device:
        id = 0

        @property
        def pci_bus_id(self):
            if uuid_raw is None:
                raise RuntimeError("no CUDA device")
            return BUS_ID

    def properties(device_id):
        if uuid_raw is None:
            raise RuntimeError("no CUDA device")
        return {"uuid": uuid_raw}

    runtime = types.SimpleNamespace(getDeviceProperties=properties)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(Device=Device, runtime=runtime))


def _fake_pynvml(devices, unsupported=()):
    """A pynvml module that knows ``devices`` (a dict of UUID or bus id -> name) and raises
    NotSupported for the queries named in ``unsupported``; it records the lookups made."""
    nvml = types.SimpleNamespace(NVML_CLOCK_SM=0, NVML_CLOCK_MEM=1, NVML_TEMPERATURE_GPU=0)
    nvml.lookups = []

    def lookup(kind):
        def find(key):
            nvml.lookups.append((kind, key))
            if key not in devices:
                raise NVMLError("Not Found")
            return devices[key]

        return find

    def query(name, value):
        def read(*args):
            if name in unsupported:
                raise NVMLError("Not Supported")
            return value

        return read

    nvml.nvmlInit = nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetHandleByUUID = lookup("uuid")
    nvml.nvmlDeviceGetHandleByPciBusId = lookup("bus")
    nvml.nvmlDeviceGetHandleByIndex = lookup("index")
    nvml.nvmlDeviceGetName = lambda handle: handle.encode()  # bytes, as older releases give
    nvml.nvmlDeviceGetUUID = lambda handle: UUID
    nvml.nvmlSystemGetDriverVersion = query("driver", "580.159.04")
    nvml.nvmlSystemGetCudaDriverVersion = query("cuda", 13000)
    nvml.nvmlDeviceGetMemoryInfo = query("memory", types.SimpleNamespace(total=80 * 2**30))
    nvml.nvmlDeviceGetClockInfo = query("clock", 1980)
    nvml.nvmlDeviceGetMaxClockInfo = query("max_clock", 1980)
    nvml.nvmlDeviceGetPowerUsage = query("power", 74048)
    nvml.nvmlDeviceGetTemperature = query("temperature", 40)
    return nvml


@pytest.fixture
def modules(monkeypatch):
    def install(uuid_raw, devices, unsupported=()):
        nvml = _fake_pynvml(devices, unsupported)
        monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(uuid_raw))
        monkeypatch.setitem(sys.modules, "pynvml", nvml)
        return nvml

    return install


def test_the_device_is_found_by_its_uuid(modules):
    nvml = modules(UUID_BYTES, {UUID: "NVIDIA H100 80GB HBM3"})
    assert gpuinfo.cupy_device_uuid() == UUID
    facts = gpuinfo.nvml_facts()
    assert nvml.lookups == [("uuid", UUID)]
    assert facts["name"] == "NVIDIA H100 80GB HBM3" and facts["uuid"] == UUID
    assert facts["driver_version"] == "580.159.04" and facts["cuda_driver_version"] == "13.0"
    assert facts["memory_total_mib"] == 80 * 1024 and facts["power_w"] == pytest.approx(74.048)
    assert facts["unavailable"] == {}


def test_a_uuid_cut_at_a_zero_byte_falls_back_to_the_pci_bus_id(modules):
    # CuPy passes the UUID as a C string: b"\x31\x2a\x00..." arrives as b"1*" (seen on an
    # H100), which NVML would not know as "GPU-312a----".
    nvml = modules(b"\x31\x2a", {BUS_ID: "NVIDIA H100 80GB HBM3"})
    assert gpuinfo.cupy_device_uuid() is None
    facts = gpuinfo.nvml_facts()
    assert nvml.lookups == [("bus", BUS_ID)]
    assert facts["name"] == "NVIDIA H100 80GB HBM3" and facts["nvml_id"] == BUS_ID


def test_without_a_cuda_device_nvml_device_0_is_read(modules):
    nvml = modules(None, {0: "NVIDIA A100"})
    assert gpuinfo.nvml_facts()["name"] == "NVIDIA A100"
    assert nvml.lookups == [("index", 0)]


def test_a_device_nvml_does_not_know_is_named(modules):
    modules(UUID_BYTES, {"GPU-other": "NVIDIA H100"})
    facts = gpuinfo.nvml_facts()
    assert UUID in facts["unavailable"]["device"] and "name" not in facts


def test_an_unsupported_query_is_recorded_and_the_others_are_read(modules):
    modules(UUID_BYTES, {UUID: "NVIDIA H100"}, unsupported=("power", "clock"))
    facts = gpuinfo.nvml_facts()
    assert "Not Supported" in facts["unavailable"]["power_w"]
    assert set(facts["unavailable"]) == {"power_w", "sm_clock_mhz", "memory_clock_mhz"}
    assert facts["temperature_c"] == 40 and facts["sm_clock_max_mhz"] == 1980
