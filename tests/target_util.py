"""Helpers for the op tests: moving numpy test data to a conftest.TARGETS target and back."""
import numpy as np

from conftest import TOL
from edgevision import ops


def to_target(a, target):
    """numpy float32 data -> what the op under test receives on `target` (cpu: the numpy array;
    cuda: a torch CUDA tensor in the target's dtype)."""
    device, dtype = target
    if device == "cpu":
        return a
    import torch
    t = torch.tensor(np.asarray(a)).cuda()
    return t.half() if dtype == "float16" and t.is_floating_point() else t


def as_input(a, target):
    """The float32 values the op actually sees on `target` (FP16 storage rounds its inputs), so the
    torch expectation is computed on the same data."""
    return a.astype(np.float16).astype(np.float32) if target[1] == "float16" else a


def to_numpy(y):
    if isinstance(y, np.ndarray):
        return y
    return y.detach().float().cpu().numpy() if y.is_floating_point() else y.detach().cpu().numpy()


def on_target(target, x):
    """(what the op receives on `target`, the float32 values it holds: the data torch should see)."""
    return to_target(x, target), as_input(x, target)


def check_close(y, expected, dtype, what):
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(to_numpy(y), expected, rtol=rtol, atol=atol, err_msg=what)


def with_threads(threads, fn):
    """fn() run with the CPU kernels limited to `threads` threads, restoring the count after."""
    old = ops.get_num_threads()
    try:
        ops.set_num_threads(threads)
        return fn()
    finally:
        ops.set_num_threads(old)


def check_fast_ref_torch(fast, ref, expect, what):
    """The three CPU results of one configuration agree pairwise within the float32 tolerance."""
    rtol, atol = TOL["float32"]
    np.testing.assert_allclose(fast, ref, rtol=rtol, atol=atol, err_msg=what)
    np.testing.assert_allclose(ref, expect, rtol=rtol, atol=atol, err_msg=what)
    np.testing.assert_allclose(fast, expect, rtol=rtol, atol=atol, err_msg=what)
