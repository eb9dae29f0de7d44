"""Facts about the GPU CuPy uses, read through NVML (nvidia-ml-py, imported as pynvml).

NVML numbers devices its own way and ignores CUDA_VISIBLE_DEVICES, so the device is looked up
by the UUID CuPy reports. Every query may be unsupported on a given GPU or driver: each one
that fails is recorded as unavailable instead of failing the whole report.
"""

from __future__ import annotations


def _text(value) -> str:
    """NVML returns bytes in older nvidia-ml-py releases and str in newer ones."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def cupy_device_uuid() -> str | None:
    """The current CuPy device's UUID as NVML spells it ("GPU-xxxxxxxx-..."), if known.

    CuPy hands the UUID's 16 raw bytes over as a C string, so it stops at the first zero
    byte (seen on an H100 whose UUID has one in its third byte); a UUID cut short is not
    known, and the caller finds the device by its PCI bus id instead."""
    try:
        import cupy

        raw = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id).get("uuid")
    except Exception:
        return None
    if not raw:
        return None
    hexed = bytes(raw).hex() if not isinstance(raw, str) else raw.replace("-", "")
    if len(hexed) != 32:
        return None
    return f"GPU-{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:32]}"


def _cupy_pci_bus_id() -> str | None:
    try:
        import cupy

        return cupy.cuda.Device().pci_bus_id
    except Exception:
        return None


def nvml_handle(pynvml, uuid: str | None = None):
    """(NVML handle, how it was found) for the device CuPy uses: by ``uuid`` or CuPy's UUID,
    else by CuPy's PCI bus id, else NVML's device 0 (no CuPy device). Raises the NVML error,
    naming what was looked up, when that device is not NVML's."""
    uuid = uuid or cupy_device_uuid()
    if uuid:
        lookup, key = pynvml.nvmlDeviceGetHandleByUUID, uuid
    elif bus_id := _cupy_pci_bus_id():
        lookup, key = pynvml.nvmlDeviceGetHandleByPciBusId, bus_id
    else:
        lookup, key = pynvml.nvmlDeviceGetHandleByIndex, 0
    try:
        return lookup(key), key
    except Exception as exc:
        raise LookupError(f"NVML has no device {key!r}: {exc}") from exc


def nvml_facts(uuid: str | None = None) -> dict:
    """A dict of GPU facts; ``"unavailable"`` lists what could not be read and why."""
    facts: dict = {"unavailable": {}}
    try:
        import pynvml
    except ImportError:
        facts["unavailable"]["nvml"] = "nvidia-ml-py is not installed (pip install gpucnn[nvml])"
        return facts
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        facts["unavailable"]["nvml"] = f"NVML failed to initialise: {exc}"
        return facts
    try:
        try:
            handle, facts["nvml_id"] = nvml_handle(pynvml, uuid)
        except LookupError as exc:
            facts["unavailable"]["device"] = str(exc)
            return facts

        def read(name, query, convert=lambda v: v):
            try:
                facts[name] = convert(query())
            except Exception as exc:  # pynvml.NVMLError_NotSupported and its siblings
                facts["unavailable"][name] = f"{type(exc).__name__}: {exc}"

        read("name", lambda: pynvml.nvmlDeviceGetName(handle), _text)
        read("uuid", lambda: pynvml.nvmlDeviceGetUUID(handle), _text)
        read("driver_version", pynvml.nvmlSystemGetDriverVersion, _text)
        read(
            "cuda_driver_version",
            pynvml.nvmlSystemGetCudaDriverVersion,
            lambda v: f"{v // 1000}.{v % 1000 // 10}",
        )
        read(
            "memory_total_mib",
            lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).total,
            lambda v: v // 2**20,
        )
        read("sm_clock_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
        read(
            "sm_clock_max_mhz",
            lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
        )
        read(
            "memory_clock_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        )
        read("power_w", lambda: pynvml.nvmlDeviceGetPowerUsage(handle), lambda v: v / 1000)
        read(
            "temperature_c",
            lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
        )
        return facts
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
