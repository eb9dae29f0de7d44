"""Discrete Hopfield networks, on the current device.

The classic model: n neurons with states in {-1, +1}, all of them input and output;
symmetric weights with w_jj = 0 and no bias.

- Hebb's rule stores patterns x_k: w_ji = sum_k x_kj x_ki (j != i); storing more adds to W.
  (``rule="storkey"``, beyond the classic material, is Storkey's 1997 rule: higher capacity,
  weights scaled by 1/n. Its weights are fractions, so its fields are rounded sums: where a
  field is 0 in exact arithmetic, rounding decides whether the neuron keeps its state, and
  the NumPy path and the kernels, which sum in other orders, may decide such a neuron
  differently. Hebbian weights are integers, their fields exact: there every backend gives
  the same states, bit for bit.)
- A neuron's local field is xi_j = sum_i w_ji y_i; its update sets y_j to +1 if xi_j > 0, to -1
  if xi_j < 0, and **keeps y_j if xi_j = 0**.
- Asynchronous (sequential) activity updates neurons one at a time, cyclically j = 1..n (or in
  a random order per sweep), and stops at the first stable state: a full sweep with no change.
  The energy E(y) = -1/2 sum_j sum_i w_ji y_j y_i never increases, so it always stops.
- Synchronous (parallel) activity updates every neuron from the same old state; it may end in
  a 2-cycle, which recall reports as not converged.
- Unlearning a phantom (spurious minimum) x: w'_ji = w_ji - x_i x_j (diagonal kept 0).

Everything is batched: states are (batch, n) arrays, one state per row, or a single (n,) state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import check_choice, check_int, make_rng
from ._device import array_device, array_module, get_device, to_device
from .checkpoint import load_arrays, save_arrays
from .layers.base import float_dtype
from .ops._dispatch import backend

RULES = ("hebb", "storkey")
ORDERS = ("cyclic", "random")
MODES = ("async", "sync")
# Integers are exact in float32 below 2^24: every Hebbian weight and field must stay there.
EXACT_FLOAT32 = 2**24


@dataclass
class RecallResult:
    """What ``HopfieldNetwork.recall`` returns; arrays live on the network's device.

    states     the final states, shaped like the input
    converged  per state: reached a stable state (a sweep that changed nothing, or for sync a
               step that changed nothing) within max_sweeps; a 2-cycle is not convergence
    sweeps     per state: sweeps (async) or steps (sync) run, the final unchanged one included
    energies   (sweeps run + 1, batch) float64: the energy before the first sweep and after
               each; a state that stopped keeps its last value
    """

    states: object
    converged: object
    sweeps: object
    energies: object


def random_patterns(count: int, n: int, seed=None, dtype=np.float32) -> np.ndarray:
    """``count`` random patterns of n neurons, each +1 or -1 with probability 1/2 (NumPy)."""
    count, n = check_int(count, "count", 0), check_int(n, "n", 1)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy number type, got {dtype!r}") from None
    if dtype.kind not in "if":  # unsigned types and bools cannot hold -1
        raise TypeError(f"dtype must be a signed integer or float type, got {dtype}")
    rng = make_rng(seed)
    return np.where(rng.random((count, n)) < 0.5, -1, 1).astype(dtype)


class HopfieldNetwork:
    """A Hopfield network of ``n`` neurons on the current device (``gpucnn.set_device``)."""

    def __init__(self, n: int, dtype=np.float32):
        self.n = check_int(n, "n", 2)
        self.dtype = float_dtype(dtype)
        self.device = get_device()
        self.rule: str | None = None  # the rule of the stored patterns, once there are some
        self.stored = 0  # patterns stored so far (minus none: unlearning is separate)
        self._set_weights(to_device(np.zeros((self.n, self.n), self.dtype), self.device), None)

    def __repr__(self) -> str:
        return (
            f"HopfieldNetwork({self.n}, dtype={self.dtype.name}, device={self.device!r}, "
            f"rule={self.rule!r}, stored={self.stored})"
        )

    @property
    def xp(self):
        return array_module(self._w)

    @property
    def weights(self):
        """A copy of W (n, n) on the network's device."""
        return self._w.copy()

    # ------------------------------------------------------------------------- checks

    def _as_states(self, states, name: str, defer_check: bool = False):
        """``states`` as a 2-D (batch, n) array of the network's dtype and device, plus
        whether the caller passed a single (n,) state. Values must be exactly +1 or -1: checked
        here, or on a GPU with ``defer_check`` by ``_check_states`` on the check returned
        third (None elsewhere), once the caller has launched its own kernels (asking the check
        waits for it; launched first, a product runs while the host waits, instead of after).
        The host checks first: its products would run on NaN and warn."""
        if isinstance(states, (list, tuple)):
            states = to_device(np.asarray(states), self.device)
        try:
            where = array_device(states)
        except TypeError:
            raise TypeError(
                f"{name} must be an array (or a list) of +1/-1, got {type(states).__name__}"
            ) from None
        if where != ("gpu" if self.device == "gpu" else "host"):
            raise TypeError(
                f"{name} is on the {'GPU' if where == 'gpu' else 'host'} but the network lives "
                f"on device {self.device!r}: move it with gpucnn.to_device"
            )
        # (wider floats than float64, np.longdouble: no backend computes in them, and their
        # check below, in float64, would round 1 + 1e-18 to a valid 1)
        if states.dtype.kind not in "iuf" or states.dtype.itemsize > 8:
            raise TypeError(
                f"{name} must hold numbers +1/-1 of at most 64 bits, got dtype {states.dtype}"
            )
        single = states.ndim == 1
        if states.ndim not in (1, 2) or states.shape[-1] != self.n:
            raise ValueError(
                f"{name} must have shape ({self.n},) or (batch, {self.n}), got "
                f"{tuple(states.shape)}"
            )
        # Checked before any rounding to the network's dtype (1 + 1e-12 is not a state), in
        # float64 unless already in that dtype: exact for every integer that could be +-1.
        checked = states if states.dtype == self.dtype else states.astype(np.float64)
        invalid = backend(checked).hopfield.invalid_states(checked) if checked.size else None
        # No copy when the states already are the network's dtype and C-contiguous (on a GPU a
        # copy is another launch per call): nothing downstream writes to them.
        matrix = self.xp.ascontiguousarray(
            states.reshape(-1, self.n).astype(self.dtype, copy=False)
        )
        if defer_check and where == "gpu":
            return matrix, single, invalid
        self._check_states(invalid, name)
        return (matrix, single, None) if defer_check else (matrix, single)

    @staticmethod
    def _check_states(invalid, name: str) -> None:
        """Raise if ``_as_states``'s check found some value other than +1 or -1."""
        if invalid is not None and invalid.found():
            raise ValueError(f"{name} must hold only +1 and -1 (found other values or NaN)")

    def _shaped(self, matrix, single: bool):
        return matrix[0] if single else matrix

    # -------------------------------------------------------------------- learning

    def store(self, patterns, rule: str = "hebb") -> None:
        """Add ``patterns`` ((p, n) or (n,), values +1/-1) to the weights with ``rule``."""
        check_choice(rule, "rule", RULES)
        if self.rule is not None and rule != self.rule:
            raise ValueError(
                f"this network holds {self.rule} weights; {rule} weights have another scale "
                "and cannot be added to them (use a new network)"
            )
        x, _ = self._as_states(patterns, "patterns")
        xp = self.xp
        if rule == "hebb":
            w = self._w + x.T @ x  # cuBLAS through CuPy on a GPU
        else:
            w = self._w.copy()
            for pattern in x:  # Storkey's rule is sequential in the patterns
                # w_ij += (x_i x_j - x_i h_ji - h_ij x_j) / n with h_ij = sum_{k != i, j} w_ik x_k
                # = f_i - w_ij x_j, f = W x. The two cross terms are added first so that every
                # element and its mirror round alike: W stays exactly symmetric.
                f = w @ pattern
                cross = xp.outer(pattern, f) + xp.outer(f, pattern)
                w += (xp.outer(pattern, pattern) - cross + 2 * w) / self.n
                xp.fill_diagonal(w, 0)
        xp.fill_diagonal(w, 0)
        self._set_weights(w, rule)
        self.rule = rule
        self.stored += len(x)

    def unlearn(self, phantoms) -> None:
        """Unlearn phantoms (spurious states): w'_ji = w_ji - x_i x_j, diagonal kept 0."""
        x, _ = self._as_states(phantoms, "phantoms")
        w = self._w - x.T @ x
        self.xp.fill_diagonal(w, 0)
        self._set_weights(w, self.rule)

    def _set_weights(self, w, rule: str | None) -> None:
        """W becomes ``w``, whose rule is ``rule``, once checked (``_check_exact``); what
        the products kept of the old W goes with it."""
        self._max_weight = self._check_exact(w, rule)
        self._w = w
        self._product_weights: dict = {}  # what backends made of W for their products

    def _check_exact(self, w, rule: str | None) -> float | None:
        """Hebbian weights (and unlearned ones) are integers; in float32 their fields are
        exact only while n * max|w| < 2^24. Refuse weights past that rather than decide ties
        wrongly. Returns max|w| for float32 integer weights, else None."""
        if self.dtype != np.float32 or rule == "storkey":
            return None
        largest = max(float(w.max()), -float(w.min()))  # no |W| temporary of n^2 values
        if largest * self.n >= EXACT_FLOAT32:
            raise ValueError(
                f"float32 cannot hold this network's fields exactly (n * max|w| = "
                f"{largest * self.n:.0f} >= 2^24): use HopfieldNetwork(n, dtype=np.float64)"
            )
        return largest

    def _weights_for(self, impl):
        """W as the products of backend ``impl`` take it: the CUDA path may use W in float16
        for the tensor cores, which it keeps in ``_product_weights`` until W changes."""
        return impl.prepare_weights(self._w, self._max_weight, self._product_weights)

    # ----------------------------------------------------------------------- dynamics

    def energy(self, states):
        """E(y) = -1/2 sum_j sum_i w_ji y_j y_i per state (float64): (batch,) or a scalar."""
        y, single, invalid = self._as_states(states, "states", defer_check=True)
        impl = backend(y).hopfield
        energy = impl.energy_from_fields(y, impl.fields(self._weights_for(impl), y))
        self._check_states(invalid, "states")  # after the launches: they run meanwhile
        return energy[0] if single else energy

    def step_sync(self, states):
        """One synchronous (parallel) step: every neuron from the same old state."""
        y, single, invalid = self._as_states(states, "states", defer_check=True)
        impl = backend(y).hopfield
        new = impl.step_sync(self._weights_for(impl), y)
        self._check_states(invalid, "states")  # after the launch: the product runs meanwhile
        return self._shaped(new, single)

    def sweep_async(self, states, order: str = "cyclic", seed=None):
        """One asynchronous sweep: n single-neuron updates in ``order`` ("cyclic": 1..n,
        "random": a permutation drawn from ``seed``)."""
        return self.recall(states, "async", max_sweeps=1, order=order, seed=seed).states

    def recall(
        self, states, mode: str = "async", max_sweeps: int = 100, order: str = "cyclic", seed=None
    ) -> RecallResult:
        """Run the network from ``states`` until every state is stable (or, in sync mode, in a
        2-cycle) or ``max_sweeps`` sweeps ran. Asynchronous recall stays on the device: no
        host round trip per sweep."""
        check_choice(mode, "mode", MODES)
        check_choice(order, "order", ORDERS)
        max_sweeps = check_int(max_sweeps, "max_sweeps", 1)
        y, single = self._as_states(states, "states")
        if mode == "sync":
            if order != "cyclic":
                raise ValueError("order applies to asynchronous recall only")
            final, sweeps, converged, energies = self._recall_sync(y, int(max_sweeps))
        else:
            orders = None
            if order == "random":
                rng = make_rng(seed)
                orders = to_device(
                    np.stack([rng.permutation(self.n) for _ in range(max_sweeps)]).astype(np.int32),
                    self.device,
                )
            final, sweeps, converged, energies = backend(y).hopfield.recall_async(
                self._w, y, int(max_sweeps), orders
            )
        if single:
            return RecallResult(final[0], converged[0], sweeps[0], energies[:, 0])
        return RecallResult(final, converged, sweeps, energies)

    def _recall_sync(self, y, max_sweeps: int, check_every: int = 8):
        """Synchronous steps on the device; whether every state is done is read back every
        ``check_every`` steps only."""
        xp, impl = self.xp, backend(y).hopfield
        w = self._weights_for(impl)
        batch = y.shape[0]
        previous = None
        sweeps = xp.zeros(batch, np.int32)
        converged = xp.zeros(batch, bool)
        done = xp.zeros(batch, bool)
        f = impl.fields(w, y)
        energies = [impl.energy_from_fields(y, f)]
        for step in range(max_sweeps):
            new = impl.next_states(f, y)
            active = ~done
            same = xp.all(new == y, axis=1)
            cycle = (
                xp.zeros(batch, bool)
                if previous is None
                else (~same & xp.all(new == previous, axis=1))
            )
            sweeps += active
            converged |= active & same
            done |= active & (same | cycle)
            previous, y = y, xp.where(active[:, None], new, y)
            f = impl.fields(w, y)
            energies.append(impl.energy_from_fields(y, f))
            if (step + 1) % check_every == 0 and bool(done.all()):
                break
        ran = int(sweeps.max()) if batch else 0
        return y, sweeps, converged, xp.stack(energies)[: ran + 1]

    # --------------------------------------------------------------------- save / load

    def save(self, path) -> None:
        """Write the weights (and n, rule, patterns stored) to ``path`` (.npz), atomically."""
        save_arrays(
            path,
            {
                "weights": self._w,
                "rule": np.array(self.rule or ""),
                "stored": np.array(self.stored),
            },
        )

    @classmethod
    def load(cls, path, dtype=None) -> HopfieldNetwork:
        """A network on the current device from a file written by ``save``; the weights are
        checked (square, symmetric, zero diagonal, finite) before anything is built."""

        def check_headers(headers) -> None:  # before any array is read
            members = {header.name: header for header in headers}
            missing = {"weights", "rule", "stored"} - set(members)
            unexpected = set(members) - {"weights", "rule", "stored"}
            if missing or unexpected:
                raise ValueError(
                    f"{path} is not a saved Hopfield network: missing "
                    f"{sorted(missing) or 'nothing'}, unexpected {sorted(unexpected) or 'nothing'}"
                )
            _, shape, dtype = members["weights"]
            square = len(shape) == 2 and shape[0] == shape[1] and shape[0] >= 2
            if not square or dtype not in (np.float32, np.float64):
                raise ValueError(
                    f"{path}: weights must be a square float32 or float64 matrix, got {dtype} "
                    f"{shape}"
                )
            for name, kinds, what in (
                ("rule", "U", "a rule's name"),
                ("stored", "iu", "a non-negative integer count"),
            ):
                _, shape, dtype = members[name]
                if shape != () or dtype.kind not in kinds:
                    raise ValueError(f"{path}: {name} must be {what}, got {dtype} {shape}")

        arrays = load_arrays(path, check_headers)
        w, rule = arrays["weights"], str(arrays["rule"])
        if not np.isfinite(w).all() or not np.array_equal(w, w.T) or np.any(np.diag(w) != 0):
            raise ValueError(f"{path}: weights must be finite, symmetric, with a zero diagonal")
        if rule not in ("", *RULES):
            raise ValueError(f"{path}: unknown rule {rule!r}")
        if rule != "storkey" and not np.array_equal(w, np.round(w)):
            # Hebb's rule and unlearning add products of +-1: anything else was not saved here
            raise ValueError(f"{path}: {rule or 'unlearned'} weights must be whole numbers")
        stored = arrays["stored"]
        if stored < 0:
            raise ValueError(f"{path}: stored must be a non-negative integer count, got {stored}")
        network = cls(w.shape[0], dtype or w.dtype)
        network.rule = rule or None
        network.stored = int(stored)
        network._set_weights(to_device(w.astype(network.dtype), network.device), network.rule)
        return network
